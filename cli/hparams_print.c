// hparams_print.c: print the hyperparameters an edit will use (ked edit, ked hparams).
#include <stdio.h>
#include <string.h>

#include "cli.h"

// the values that will be used (design.md §3b: users see what the defaults resolved to)
void cli_print_hparams(const ked_hparams *hp) {
    if (hp->method[0] == 'f')
        printf("         lr %g, num_steps %d, weight_decay %g, norm_constraint %g, objective %s%s\n",
               hp->lr, hp->num_steps, hp->weight_decay, hp->norm_constraint,
               hp->ft_target_new ? "target_new" : "prompt_last", hp->ft_bias ? ", and the bias if any" : "");
    else {
        printf("         v_num_grad_steps %d, v_lr %g, v_weight_decay %g, clamp_norm_factor %g, "
               "kl_factor %g, fact_token %s, templates", hp->v_num_grad_steps, hp->v_lr,
               hp->v_weight_decay, hp->clamp_norm_factor, hp->kl_factor,
               (const char *[]){"subject_last", "last", "subject_first",
                                "subject_first_after_last"}[hp->fact_token & 3]);
        for (int i = 0; i < hp->n_ctx_len; i++) printf(" [%d, %d]", hp->ctx_len[i][0], hp->ctx_len[i][1]);
        printf("\n");
        int pmet = !strcmp(hp->method, "pmet");
        int memit = !strcmp(hp->method, "memit") || !strcmp(hp->method, "emmet") || pmet;
        if (memit || !strcmp(hp->method, "alphaedit") || hp->mom2_adjustment)
            printf("         statistics: mom2_dataset %s, mom2_n_samples %d%s%s\n", hp->mom2_dataset,
                   hp->mom2_n_samples, hp->stats_dir[0] ? ", stats_dir " : "", hp->stats_dir);
        if (memit) printf("         mom2_update_weight %g", hp->mom2_update_weight);
        if (!strcmp(hp->method, "emmet"))
            printf(", emmet_lambda %g, update_norm_lambda %g", hp->emmet_lambda, hp->update_norm_lambda);
        if (pmet)
            printf(", nll_loss_factor %g; z: deltas at mlp_out and attn_out of the last layer", hp->nll_loss_factor);
        if (memit) printf("\n");
        if (!strcmp(hp->method, "alphaedit"))
            printf("         nullspace_threshold %g%s, L2 %g%s\n", hp->nullspace_threshold < 0 ? -hp->nullspace_threshold : hp->nullspace_threshold,
                   hp->nullspace_threshold < 0 ? " x the largest eigenvalue of C" : "",
                   hp->L2 < 0 ? -hp->L2 : hp->L2, hp->L2 < 0 ? " x the mean eigenvalue of C" : "");
    }
}

