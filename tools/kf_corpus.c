// kf_corpus.c: builds the training corpus and the manifest of models/ked-facts from CounterFact
// (ROME schema, counterfact_portability_gpt4.json) and WikiText-2. Deterministic for a seed.
//
//   kf_corpus --counterfact FILE --wikitext FILE --seed S --held-out N --copies R
//             --wiki-lines L --corpus OUT.txt --tok-corpus OUT.txt --manifest OUT.jsonl
//
// Facts: every record's true fact (subject, relation, target_true), written with every template
// of its relation: the requested_rewrite prompts of all records of that relation and the
// wordings of their paraphrase prompts (the noise prefix removed: see wording_template).
// Records held out for generalisation (N of them, chosen by a seeded hash of the
// case id) get every template except the wordings of their own two paraphrase prompts, and
// their paraphrase prompts are not trained; the other records also get their paraphrase prompts
// as they are (noise prefix included). Every record's 10 neighbourhood prompts are trained with
// the record's target_true (their true answer). Finally, no sentence may contain a held-out
// subject written with one of its paraphrase wordings: every sentence is checked.
//
// corpus: R differently shuffled copies of the fact sentences, grouped 1-3 to a line, then the
// first L non-empty WikiText-2 lines (CRLF removed; L < 0: all). tok-corpus: one copy of the
// facts and the WikiText lines (for the BPE trainer). manifest: one JSON object per record
// with the evaluation prompts and the split (case_id, held_out, relation_id, subject, prompt, target = target_true, target_new (the
// counterfactual edit of the record, never trained), paraphrases, neighbours).
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *fmt, const char *a) {
    fprintf(stderr, "kf_corpus: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    exit(1);
}

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t rng_s;
static uint64_t rnd(void) { rng_s = mix(rng_s); return rng_s; }

// a growable list of strings
typedef struct { char **s; size_t n, cap; } strs;
static void push(strs *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->s = realloc(l->s, l->cap * sizeof *l->s);
        if (!l->s) die("%s", "out of memory");
    }
    l->s[l->n] = strdup(s);
    if (!l->s[l->n]) die("%s", "out of memory");
    l->n++;
}
static int contains(const strs *l, const char *s) {
    for (size_t i = 0; i < l->n; i++) if (!strcmp(l->s[i], s)) return 1;
    return 0;
}

// fill a template "... {} ..." with a subject (malloc'd)
static char *fill(const char *t, const char *subj) {
    const char *p = strstr(t, "{}");
    if (!p) return NULL;
    size_t n = strlen(t) + strlen(subj);
    char *o = malloc(n + 1);
    if (!o) die("%s", "out of memory");
    snprintf(o, n + 1, "%.*s%s%s", (int)(p - t), t, subj, p + 2);
    return o;
}

// the part of a paraphrase prompt before its subject, cut at the last sentence boundary
// (". ", "? ", "! ", ": ", ") ", newline): a first guess at where the noise prefix ends
static const char *boundary_cut(const char *para, const char *subj_at) {
    const char *start = para;
    for (const char *q = para; q < subj_at; q++) {
        if ((q[0] == '.' || q[0] == '?' || q[0] == '!' || q[0] == ':' || q[0] == ')') && q + 1 < subj_at && q[1] == ' ')
            start = q + 2;
        else if (q[0] == '\n') start = q + 1;
    }
    return start;
}

// the wording of a paraphrase prompt, as a template: the subject replaced by {}, and before it
// the longest known prefix of the relation's templates that ends the text before the subject
// (none: the wording starts at the subject). Known prefixes: those of the requested_rewrite
// prompts, and boundary cuts seen in at least 3 paraphrases of the relation. Noise without a
// sentence boundary ("Category:Moths described in 1941 BMW E23, created by") is thus cut too.
static char *wording_template(const char *para, const char *subj, const strs *prefixes) {
    const char *p = strstr(para, subj);
    if (!p) return NULL;
    size_t pre_len = (size_t)(p - para), best = 0;
    for (size_t i = 0; i < prefixes->n; i++) {
        size_t l = strlen(prefixes->s[i]);
        if (l > best && l <= pre_len && !memcmp(p - l, prefixes->s[i], l)) best = l;
    }
    size_t n = best + 2 + strlen(p + strlen(subj));
    char *o = malloc(n + 1);
    if (!o) die("%s", "out of memory");
    snprintf(o, n + 1, "%.*s{}%s", (int)best, p - best, p + strlen(subj));
    return o;
}

// a hash set of sentences, for deduplication
#define HCAP (1u << 21)
static char **hset;
static size_t slot_of(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = s; *p; p++) { h ^= (unsigned char)*p; h *= 1099511628211ull; }
    size_t j = (size_t)(mix(h) & (HCAP - 1));
    while (hset[j] && strcmp(hset[j], s)) j = (j + 1) & (HCAP - 1);
    return j;
}
static int contains_fast(const char *s) { return hset[slot_of(s)] != NULL; }
static void remember(const char *s) {
    size_t j = slot_of(s);
    if (!hset[j] && !(hset[j] = strdup(s))) die("%s", "out of memory");
}

typedef struct {
    long case_id;
    const char *subject, *relation, *prompt_t, *target, *target_new;
    const char *para[2];
    char *para_t[2];       // wording templates of the paraphrases
    const char *neigh[10];
    int n_neigh;
    int held_out;
} record;

typedef struct { const char *rel; strs templates; } relation;

static const char *jstr(json_t *o, const char *key, const char *what) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) { fprintf(stderr, "kf_corpus: %s: missing string field '%s'\n", what, key); exit(1); }
    return json_string_value(v);
}

int main(int argc, char **argv) {
    const char *cf = NULL, *wt = NULL, *corpus_path = NULL, *tok_path = NULL, *man_path = NULL;
    uint64_t seed = 1;
    int held_n = 516, copies = 2;
    long wiki_lines = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--counterfact")) cf = argv[i + 1];
        else if (!strcmp(argv[i], "--wikitext")) wt = argv[i + 1];
        else if (!strcmp(argv[i], "--corpus")) corpus_path = argv[i + 1];
        else if (!strcmp(argv[i], "--tok-corpus")) tok_path = argv[i + 1];
        else if (!strcmp(argv[i], "--manifest")) man_path = argv[i + 1];
        else if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--held-out")) held_n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--copies")) copies = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--wiki-lines")) wiki_lines = atol(argv[i + 1]);
        else die("unknown option %s", argv[i]);
    }
    if (!cf || !wt || !corpus_path || !tok_path || !man_path)
        die("%s", "usage: kf_corpus --counterfact F --wikitext F --corpus OUT --tok-corpus OUT "
                  "--manifest OUT [--seed S --held-out N --copies R]");
    hset = calloc(HCAP, sizeof *hset);
    if (!hset) die("%s", "out of memory");
    json_error_t je;
    json_t *root = json_load_file(cf, 0, &je);
    if (!json_is_array(root)) die("%s: not a JSON array", cf);
    size_t nr = json_array_size(root);
    record *R = calloc(nr, sizeof *R);
    if (!R) die("%s", "out of memory");
    for (size_t i = 0; i < nr; i++) {
        json_t *o = json_array_get(root, i), *rr = json_object_get(o, "requested_rewrite");
        record *r = &R[i];
        json_t *cid = json_object_get(o, "case_id");
        if (!json_is_integer(cid) || !json_is_object(rr)) die("%s: record without case_id/requested_rewrite", cf);
        r->case_id = (long)json_integer_value(cid);
        r->subject = jstr(rr, "subject", cf);
        r->relation = jstr(rr, "relation_id", cf);
        r->prompt_t = jstr(rr, "prompt", cf);
        r->target = jstr(json_object_get(rr, "target_true"), "str", cf);
        r->target_new = jstr(json_object_get(rr, "target_new"), "str", cf);
        json_t *pp = json_object_get(o, "paraphrase_prompts"), *np = json_object_get(o, "neighborhood_prompts");
        if (json_array_size(pp) != 2) die("%s: a record without 2 paraphrase prompts", cf);
        for (int k = 0; k < 2; k++) {
            r->para[k] = json_string_value(json_array_get(pp, (size_t)k));
        }
        for (size_t k = 0; k < json_array_size(np) && k < 10; k++)
            r->neigh[r->n_neigh++] = json_string_value(json_array_get(np, k));
    }
    // held-out records: the held_n smallest seeded hashes of the case id
    {
        uint64_t *h = malloc(nr * sizeof *h);
        for (size_t i = 0; i < nr; i++) h[i] = mix(seed * 1000003u + (uint64_t)R[i].case_id);
        for (size_t i = 0; i < nr; i++) {
            size_t rank = 0;
            for (size_t j = 0; j < nr; j++) rank += h[j] < h[i] || (h[j] == h[i] && j < i);
            R[i].held_out = rank < (size_t)held_n;
        }
        free(h);
    }
    // known template prefixes per relation (see wording_template), then the paraphrase wordings
    relation *rel = calloc(nr, sizeof *rel);
    size_t n_rel = 0;
    strs *prefixes = calloc(nr, sizeof *prefixes), *cuts = calloc(nr, sizeof *cuts);
    if (!rel || !prefixes || !cuts) die("%s", "out of memory");
    for (size_t i = 0; i < nr; i++) {
        size_t k = 0;
        while (k < n_rel && strcmp(rel[k].rel, R[i].relation)) k++;
        if (k == n_rel) rel[n_rel++].rel = R[i].relation;
        const char *b = strstr(R[i].prompt_t, "{}");
        char pre[1024];
        snprintf(pre, sizeof pre, "%.*s", (int)(b - R[i].prompt_t), R[i].prompt_t);
        if (!contains(&prefixes[k], pre)) push(&prefixes[k], pre);
        for (int q = 0; q < 2; q++) {
            const char *at = strstr(R[i].para[q], R[i].subject);
            if (!at) continue;
            const char *c = boundary_cut(R[i].para[q], at);
            snprintf(pre, sizeof pre, "%.*s", (int)(at - c), c);
            push(&cuts[k], pre); // with repetitions: counted below
        }
    }
    for (size_t k = 0; k < n_rel; k++)
        for (size_t i = 0; i < cuts[k].n; i++) {
            size_t c = 0;
            for (size_t j = 0; j < cuts[k].n; j++) c += !strcmp(cuts[k].s[i], cuts[k].s[j]);
            if (c >= 3 && !contains(&prefixes[k], cuts[k].s[i])) push(&prefixes[k], cuts[k].s[i]);
        }
    for (size_t i = 0; i < nr; i++) {
        size_t k = 0;
        while (strcmp(rel[k].rel, R[i].relation)) k++;
        for (int q = 0; q < 2; q++) R[i].para_t[q] = wording_template(R[i].para[q], R[i].subject, &prefixes[k]);
    }
    // templates per relation, in first-seen order
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < nr; i++) {
            size_t k = 0;
            while (k < n_rel && strcmp(rel[k].rel, R[i].relation)) k++;
            if (k == n_rel) rel[n_rel++].rel = R[i].relation;
            if (pass == 0) {
                if (!contains(&rel[k].templates, R[i].prompt_t)) push(&rel[k].templates, R[i].prompt_t);
            } else {
                for (int p = 0; p < 2; p++)
                    if (R[i].para_t[p] && !contains(&rel[k].templates, R[i].para_t[p]))
                        push(&rel[k].templates, R[i].para_t[p]);
            }
        }
    // forbidden strings: a held-out subject in its paraphrase wordings
    strs forbidden = {0};
    for (size_t i = 0; i < nr; i++)
        if (R[i].held_out)
            for (int p = 0; p < 2; p++) {
                char *f = R[i].para_t[p] ? fill(R[i].para_t[p], R[i].subject) : NULL;
                if (f) { push(&forbidden, f); free(f); }
            }
    // fact sentences
    strs facts = {0};
    size_t dropped = 0, n_record_sent = 0, n_neigh_sent = 0;
    char buf[8192];
#define ADD_FACT(TEXT, TARGET, COUNTER)                                                          \
    do {                                                                                         \
        snprintf(buf, sizeof buf, "%s %s.", TEXT, TARGET);                                       \
        int bad = 0;                                                                             \
        for (size_t f_ = 0; f_ < forbidden.n && !bad; f_++) bad = strstr(buf, forbidden.s[f_]) != NULL; \
        if (bad) dropped++;                                                                      \
        else if (!contains_fast(buf)) { push(&facts, buf); remember(buf); COUNTER++; }           \
    } while (0)
    for (size_t i = 0; i < nr; i++) {
        record *r = &R[i];
        size_t k = 0;
        while (strcmp(rel[k].rel, r->relation)) k++;
        // the record's own prompt first, then every template of its relation
        char *own = fill(r->prompt_t, r->subject);
        ADD_FACT(own, r->target, n_record_sent);
        free(own);
        for (size_t t = 0; t < rel[k].templates.n; t++) {
            char *s = fill(rel[k].templates.s[t], r->subject);
            if (!s) continue;
            ADD_FACT(s, r->target, n_record_sent);
            free(s);
        }
        if (!r->held_out)
            for (int p = 0; p < 2; p++) ADD_FACT(r->para[p], r->target, n_record_sent);
        for (int q = 0; q < r->n_neigh; q++) ADD_FACT(r->neigh[q], r->target, n_neigh_sent);
    }
    // WikiText lines
    strs wiki = {0};
    {
        FILE *f = fopen(wt, "rb");
        if (!f) die("%s: cannot open", wt);
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) > 0) {
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
            char *s = line;
            while (*s == ' ') s++;
            if (*s && (wiki_lines < 0 || (long)wiki.n < wiki_lines)) push(&wiki, s);
        }
        free(line);
        fclose(f);
    }
    // corpus: copies of the shuffled facts, grouped 1..3 per line, then WikiText
    rng_s = mix(seed ^ 0xC0FFEEull);
    FILE *out = fopen(corpus_path, "wb");
    if (!out) die("%s: cannot write", corpus_path);
    size_t *perm = malloc(facts.n * sizeof *perm);
    size_t lines = 0;
    for (int c = 0; c < copies; c++) {
        for (size_t i = 0; i < facts.n; i++) perm[i] = i;
        for (size_t i = facts.n; i > 1; i--) { size_t j = rnd() % i, t = perm[i - 1]; perm[i - 1] = perm[j]; perm[j] = t; }
        for (size_t i = 0; i < facts.n;) {
            size_t g = 1 + rnd() % 3;
            for (size_t k = 0; k < g && i < facts.n; k++, i++) fprintf(out, "%s%s", k ? " " : "", facts.s[perm[i]]);
            fputc('\n', out);
            lines++;
        }
    }
    for (size_t i = 0; i < wiki.n; i++) fprintf(out, "%s\n", wiki.s[i]);
    fclose(out);
    FILE *tk = fopen(tok_path, "wb");
    if (!tk) die("%s: cannot write", tok_path);
    for (size_t i = 0; i < facts.n; i++) fprintf(tk, "%s\n", facts.s[i]);
    for (size_t i = 0; i < wiki.n; i++) fprintf(tk, "%s\n", wiki.s[i]);
    fclose(tk);
    // manifest
    FILE *mf = fopen(man_path, "wb");
    if (!mf) die("%s: cannot write", man_path);
    size_t n_held = 0;
    for (size_t i = 0; i < nr; i++) {
        record *r = &R[i];
        n_held += (size_t)r->held_out;
        char *prompt = fill(r->prompt_t, r->subject);
        json_t *o = json_pack("{s:I, s:b, s:s, s:s, s:s, s:s, s:s, s:[s,s], s:[]}", "case_id",
                              (json_int_t)r->case_id, "held_out", r->held_out, "relation_id", r->relation,
                              "subject", r->subject, "prompt", prompt, "target", r->target,
                              "target_new", r->target_new, "paraphrases", r->para[0], r->para[1],
                              "neighbours");
        for (int q = 0; q < r->n_neigh; q++) json_array_append_new(json_object_get(o, "neighbours"), json_string(r->neigh[q]));
        char *t = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fprintf(mf, "%s\n", t);
        free(t); free(prompt);
        json_decref(o);
    }
    fclose(mf);
    size_t n_tpl = 0;
    for (size_t k = 0; k < n_rel; k++) n_tpl += rel[k].templates.n;
    fprintf(stderr, "kf_corpus: %zu records (%zu held out), %zu relations, %zu templates; %zu fact sentences "
            "(%zu of records, %zu of neighbours), %zu dropped by the held-out rule; %zu WikiText lines; "
            "corpus %zu fact lines x %d copies\n", nr, n_held, n_rel, n_tpl, facts.n, n_record_sent,
            n_neigh_sent, dropped, wiki.n, lines / (size_t)(copies > 0 ? copies : 1), copies);
    return 0;
}
