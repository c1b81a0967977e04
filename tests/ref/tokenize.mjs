// Encode / decode with @lenml/tokenizers (transformers.js tokenizers) for the reference scripts.
// usage: node tests/ref/tokenize.mjs <model dir>  < {"encode": ["text", ...], "decode": [[ids], ...]}
// prints {"encode": [[ids], ...], "decode": ["text", ...]}  (encode adds special tokens as HF does)
import { readFileSync } from "node:fs";
import { TokenizerLoader } from "@lenml/tokenizers";

const dir = process.argv[2];
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(readFileSync(dir + "/tokenizer.json", "utf8")),
  tokenizerConfig: JSON.parse(readFileSync(dir + "/tokenizer_config.json", "utf8")),
});
const req = JSON.parse(readFileSync(0, "utf8"));
const out = {
  encode: (req.encode || []).map((t) => Array.from(tok.encode(t))),
  decode: (req.decode || []).map((ids) => tok.decode(ids, { skip_special_tokens: false })),
};
process.stdout.write(JSON.stringify(out) + "\n");
