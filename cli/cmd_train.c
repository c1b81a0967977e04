// cmd_train.c: `ked train`: train a LLaMA from scratch (a fresh random init) or from a checkpoint
// on a corpus, with checkpoints that a stopped run resumes from (docs/training.md).
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *usage =
    "usage: ked train --data CORPUS --out DIR (--model DIR | --init) [options]\n"
    "\n"
    "Trains with AdamW (warmup + cosine decay, gradient clipping) on packed batches. Checkpoints\n"
    "DIR/checkpoint-STEP are Hugging Face directories (+ optimizer and trainer state); running the\n"
    "same command again resumes from the newest one, bitwise as the uninterrupted run.\n"
    "\n"
    "  --data FILE         corpus: text (one document a line) or .jsonl ({\"text\": ...})\n"
    "  --out DIR           run directory (checkpoints)\n"
    "  --model DIR         start from this HF checkpoint (its tokenizer.json unless --tokenizer)\n"
    "  --init              start from a fresh LLaMA (written to DIR/init); needs --tokenizer\n"
    "  --tokenizer FILE    tokenizer.json\n"
    "  fresh model sizes:  --layers 4 --d-model 256 --heads 8 --kv-heads H --d-ff 688\n"
    "                      --vocab V (default: the tokenizer's) --max-pos 512 --init-seed 1\n"
    "                      --untied (separate lm head)\n"
    "  --batch 16 --seq 128 --steps 1000 --warmup 100\n"
    "  --lr 1e-3 --min-lr 1e-4 --weight-decay 0.1 --beta1 0.9 --beta2 0.95 --clip 1.0\n"
    "  --eval-frac 0.01 --eval-every 200 --eval-batches 4\n"
    "  --ckpt-every 200 --keep 2 --seed 1 --threads N --log-every 10\n"
    "  --stop-at STEP      stop after STEP (a checkpoint is written), as an interruption would\n";

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

static void on_progress(const ked_train_progress *p, void *user) {
    (void)user;
    char el[32], left[32];
    fmt_time(el, sizeof el, p->elapsed_s);
    fmt_time(left, sizeof left, p->eta_s);
    if (!isnan(p->eval_loss))
        fprintf(stderr, "eval  step %ld | eval loss %.4f\n", p->step, (double)p->eval_loss);
    else
        fprintf(stderr, "step %ld/%ld | epoch %d | loss %.4f | lr %.2e | grad %.2f | %.0f tok/s | %s, %s left\n",
                p->step, p->steps, p->epoch, (double)p->loss, (double)p->lr, (double)p->grad_norm,
                p->tokens_per_s, el, left);
}

int cmd_train(int argc, char **argv) {
    ked_train_opts o = ked_train_defaults();
    ked_init_opts io = ked_init_defaults();
    int init = 0, vocab_given = 0, kv_given = 0;
    long threads = 0, lv;
    double dv;
    const char *v;
    o.on_progress = on_progress;
#define INT_OPT(NAME, LO, HI, DST)                                                              \
    else if ((v = cli_opt_value(argc, argv, &i, NAME))) {                                       \
        if (!cli_parse_int(v, LO, HI, &lv)) return cli_usage_error("train", "bad " NAME " '%s'", v); \
        DST = lv;                                                                               \
    }
#define FLOAT_OPT(NAME, LO, HI, DST)                                                            \
    else if ((v = cli_opt_value(argc, argv, &i, NAME))) {                                       \
        if (!cli_parse_float(v, LO, HI, &dv)) return cli_usage_error("train", "bad " NAME " '%s'", v); \
        DST = (float)dv;                                                                        \
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; }
        else if ((v = cli_opt_value(argc, argv, &i, "--data"))) o.data = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--out"))) o.out_dir = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--model"))) o.model = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--tokenizer"))) o.tokenizer = v;
        else if (!strcmp(argv[i], "--init")) init = 1;
        else if (!strcmp(argv[i], "--untied")) io.tied = 0;
        INT_OPT("--layers", 1, 1024, io.n_layer)
        INT_OPT("--d-model", 2, 1 << 16, io.d_model)
        INT_OPT("--heads", 1, 1024, io.n_head)
        else if ((v = cli_opt_value(argc, argv, &i, "--kv-heads"))) {
            if (!cli_parse_int(v, 1, 1024, &lv)) return cli_usage_error("train", "bad --kv-heads '%s'", v);
            io.n_kv_head = (int)lv; kv_given = 1;
        }
        INT_OPT("--d-ff", 1, 1 << 20, io.d_ff)
        else if ((v = cli_opt_value(argc, argv, &i, "--vocab"))) {
            if (!cli_parse_int(v, 1, 1 << 24, &lv)) return cli_usage_error("train", "bad --vocab '%s'", v);
            io.vocab = (int)lv; vocab_given = 1;
        }
        INT_OPT("--max-pos", 1, 1 << 20, io.max_pos)
        INT_OPT("--init-seed", 0, 0x7fffffffffffffffL, io.seed)
        INT_OPT("--batch", 1, 1 << 16, o.batch)
        INT_OPT("--seq", 8, 1 << 20, o.seq)
        INT_OPT("--steps", 1, 1L << 40, o.steps)
        INT_OPT("--warmup", 0, 1L << 30, o.warmup)
        FLOAT_OPT("--lr", 0, 10, o.lr)
        FLOAT_OPT("--min-lr", 0, 10, o.min_lr)
        FLOAT_OPT("--weight-decay", 0, 10, o.weight_decay)
        FLOAT_OPT("--beta1", 0, 0.999999, o.beta1)
        FLOAT_OPT("--beta2", 0, 0.999999, o.beta2)
        FLOAT_OPT("--clip", 0, 1e9, o.clip)
        FLOAT_OPT("--eval-frac", 0, 0.99, o.eval_frac)
        INT_OPT("--eval-every", 0, 1L << 30, o.eval_every)
        INT_OPT("--eval-batches", 0, 1L << 20, o.eval_batches)
        INT_OPT("--ckpt-every", 0, 1L << 30, o.ckpt_every)
        INT_OPT("--keep", 1, 1000, o.keep)
        INT_OPT("--seed", 0, 0x7fffffffffffffffL, o.seed)
        INT_OPT("--stop-at", 0, 1L << 40, o.stop_at)
        INT_OPT("--log-every", 1, 1L << 30, o.progress_every)
        else if ((v = cli_opt_value(argc, argv, &i, "--threads"))) {
            if (!cli_parse_int(v, 1, 1024, &threads)) return cli_usage_error("train", "bad --threads '%s'", v);
        } else return cli_usage_error("train", "unknown argument '%s'", argv[i]);
    }
#undef INT_OPT
#undef FLOAT_OPT
    if (!o.data || !o.out_dir) return cli_usage_error("train", "--data and --out are required");
    if (!init && !o.model) return cli_usage_error("train", "give --model DIR or --init");
    if (init && o.model) return cli_usage_error("train", "--model and --init exclude each other");
    if (init && !o.tokenizer) return cli_usage_error("train", "--init needs --tokenizer FILE");
    if (threads) ked_set_threads((int)threads);
    if (!kv_given) io.n_kv_head = io.n_head;

    cli_timing tm;
    cli_timing_start(&tm);
    ked_error err;
    char init_dir[4096];
    if (init) {
        ked_tokenizer *tok = NULL;
        if (ked_tokenizer_load(o.tokenizer, &tok, &err)) return cli_report("train", &err);
        int tv = ked_tokenizer_vocab_size(tok);
        int eos = ked_tokenizer_eos(tok), bos = ked_tokenizer_bos(tok);
        ked_tokenizer_free(tok);
        if (!vocab_given) io.vocab = tv;
        io.bos_id = bos; io.eos_id = eos;
        if (mkdir(o.out_dir, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "ked train: %s: cannot create directory: %s\n", o.out_dir, strerror(errno));
            return 1;
        }
        snprintf(init_dir, sizeof init_dir, "%s/init", o.out_dir);
        // the init is deterministic: rewriting it on a resumed run changes nothing
        if (ked_model_init_write(init_dir, &io, &err)) return cli_report("train", &err);
        o.model = init_dir;
    }
    tm.load_s = ked_time_s_cli() - tm.t_start;
    double t0 = ked_time_s_cli();
    int rc = 0;
    if (ked_train(&o, &err)) rc = cli_report("train", &err);
    tm.compute_s = ked_time_s_cli() - t0;
    cli_timing_print(&tm);
    return rc;
}
