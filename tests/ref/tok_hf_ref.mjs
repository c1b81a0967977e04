// Reference ids for tokenizer.json files: @lenml/tokenizers (a dependency-free fork of
// transformers.js, an implementation of Hugging Face's tokenizer pipeline independent of ked),
// run under Node.js. The tokenizer class is left generic (no tokenizer_class), so that the
// pipeline in tokenizer.json is applied as written, as Hugging Face's `tokenizers` does.
// usage: node tests/ref/tok_hf_ref.mjs TOKENIZER.json CORPUS.txt OUT_IDS.txt [metaspace]
// metaspace: first rewrite a Prepend+Replace tokenizer.json the way newer LLaMA / Mistral files are
// written (normalizer null, pre_tokenizer Metaspace prepend_scheme "first", split false);
// tests/test_tokenizer.c makes the same rewrite (metaspace_variant()).
// (npm install in tests/ref first; tests/ref/tok_make_fixtures.sh runs everything.)
import { readFileSync, writeFileSync } from "node:fs";
import { TokenizerLoader } from "@lenml/tokenizers";

const [tokPath, corpusPath, outPath, variant] = process.argv.slice(2);
const tokenizerJSON = JSON.parse(readFileSync(tokPath, "utf8"));
if (variant === "metaspace") {
  tokenizerJSON.normalizer = null;
  // add_prefix_space: transformers.js prepends only with it; ked follows prepend_scheme
  tokenizerJSON.pre_tokenizer = { type: "Metaspace", replacement: "\u2581", add_prefix_space: true,
                                  prepend_scheme: "first", split: false };
}
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig: {} });

function unescape(line) {
  const out = [];
  const raw = Buffer.from(line, "utf8");
  for (let i = 0; i < raw.length; ) {
    const c = raw[i];
    if (c === 0x5c && i + 1 < raw.length) {
      const n = String.fromCharCode(raw[i + 1]);
      if (n === "n") { out.push(10); i += 2; continue; }
      if (n === "r") { out.push(13); i += 2; continue; }
      if (n === "t") { out.push(9); i += 2; continue; }
      if (n === "\\") { out.push(0x5c); i += 2; continue; }
      if (n === "x") { out.push(parseInt(raw.slice(i + 2, i + 4).toString(), 16)); i += 4; continue; }
    }
    out.push(c); i++;
  }
  return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(out));
}

const lines = readFileSync(corpusPath, "utf8").split("\n");
if (lines[lines.length - 1] === "") lines.pop();
const rows = lines.map((l) => tok.encode(unescape(l), { add_special_tokens: false }).join(" "));
writeFileSync(outPath, rows.join("\n") + "\n");
console.error(`${outPath}: ${rows.length} rows`);
