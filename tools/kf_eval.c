// kf_eval.c: print the accuracy of a ked-facts model on its manifest (the model card's figures).
//   kf_eval [--quick] [MODEL_DIR [MANIFEST]]   (defaults: models/ked-facts,
//   MODEL_DIR/manifest.jsonl; --quick leaves out the 10 neighbourhood prompts of each record)
#include "kf_eval.h"

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    if (quick) { argc--; argv++; }
    const char *dir = argc > 1 ? argv[1] : "models/ked-facts";
    char man[4096];
    snprintf(man, sizeof man, "%s/manifest.jsonl", dir);
    if (argc > 2) snprintf(man, sizeof man, "%s", argv[2]);
    kf_result r;
    ked_error err = {0};
    if (kf_evaluate(dir, man, !quick, &r, &err)) {
        fprintf(stderr, "kf_eval: %s\n", err.msg);
        return 1;
    }
    printf("records                 %4d (%d held out)\n", r.n_records, r.n_held);
    printf("record prompts          %6.2f%% (%d/%d)\n", kf_pct(r.prompt), r.prompt.right, r.prompt.total);
    printf("  trained records       %6.2f%% (%d/%d)\n", kf_pct(r.prompt_trained), r.prompt_trained.right, r.prompt_trained.total);
    printf("  held-out records      %6.2f%% (%d/%d)\n", kf_pct(r.prompt_held), r.prompt_held.right, r.prompt_held.total);
    printf("held-out paraphrases    %6.2f%% (%d/%d)\n", kf_pct(r.para_held), r.para_held.right, r.para_held.total);
    printf("trained paraphrases     %6.2f%% (%d/%d)\n", kf_pct(r.para_trained), r.para_trained.right, r.para_trained.total);
    printf("neighbour prompts       %6.2f%% (%d/%d)\n", kf_pct(r.neigh), r.neigh.right, r.neigh.total);
    printf("demo candidates (held out; prompt, paraphrases%s all right):", quick ? "" : " and neighbours");
    for (int i = 0; i < r.n_demo; i++) printf(" %ld", r.demo_cases[i]);
    printf("\n");
    return 0;
}
