// dataset.h: editing datasets (ZsRE, CounterFact in the ROME and EasyEdit schemas, KnowEdit)
// read into ked_case values (include/ked.h, section eval; docs/evaluation.md). Internal.
#ifndef KED_IO_DATASET_H
#define KED_IO_DATASET_H

#include "ked.h"

struct ked_dataset {
    char *path;
    ked_data_format format;
    ked_case *cases;
    int n, n_records, n_skipped, n_dropped;
    void **allocs;            // every string and array the cases point into
    int n_allocs, cap_allocs;
};

// dataset_detect: the format of a record (an object) by its fields; KED_DATA_AUTO when unknown
ked_data_format dataset_detect(const void *json_record);

#endif
