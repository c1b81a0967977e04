// safetensors.h: read, validate and write safetensors files, and see a sharded checkpoint
// (model.safetensors.index.json + shards) as one tensor namespace. Internal to libked.
//
// Format (https://github.com/huggingface/safetensors): 8 bytes little-endian u64 N, then N bytes
// of UTF-8 JSON header {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
// ..., "__metadata__": {"key": "value"}}, then the data section; offsets are relative to the
// first byte after the header. Every check that st_open makes is listed in docs/formats.md.
//
// Ownership: an st_file owns its mapping and every st_tensor it hands out; pointers returned by
// st_get/st_find/st_metadata/st_path live until st_close. An st_set owns its files likewise.
// All functions that can fail follow ked.h's conventions (status + one-line message naming the
// file and the tensor or field; outputs untouched on failure; nothing leaks).
#ifndef KED_IO_SAFETENSORS_H
#define KED_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "ked.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u * 1000u * 1000u) // bytes; larger headers are rejected as absurd

typedef struct {
    char *name;
    ked_dtype dtype;
    int ndim;                 // 0..8 (0: a scalar, numel 1)
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;            // product of shape (0 when a dim is 0)
    const void *data;         // points into the mapped file; NOT necessarily aligned: memcpy
    size_t nbytes;            // numel * ked_dtype_size(dtype)
    size_t offset;            // of data, from the start of the file
} st_tensor;

/* ------------------------------------------------------------------------------------------ */
/* one file                                                                                    */

typedef struct st_file st_file; // an mmap'd safetensors file (read-only, MAP_PRIVATE)

// st_open: map and validate a whole file (header, every tensor's dtype/shape/offsets, metadata)
// before anything is returned. *out is set only on success; free with st_close (NULL-safe).
// (As with any mmap, another process truncating the file while it is mapped makes later reads
// fault; ked's own writers never do that: they write a new file and rename it.)
ked_status st_open(const char *path, st_file **out, ked_error *err);
void st_close(st_file *f);

// tensors are numbered 0..st_count-1 in the order of their data in the file (by data_offsets).
int st_count(const st_file *f);
const st_tensor *st_get(const st_file *f, int i);                // NULL when i is out of range
const st_tensor *st_find(const st_file *f, const char *name);    // NULL if absent; O(log n)
const char *st_metadata(const st_file *f, const char *key);      // "__metadata__"[key] or NULL
int st_metadata_count(const st_file *f);
// i-th metadata entry (file order); returns the key and sets *value; NULL when out of range
const char *st_metadata_get(const st_file *f, int i, const char **value);
const char *st_path(const st_file *f);

// st_to_f32: convert a float tensor (F32, F16, BF16, F64) into out[numel]. Other dtypes are a
// KED_ERR_UNSUPPORTED error naming the file and the tensor. `f` is only used for messages
// (may be NULL). Does not allocate.
ked_status st_to_f32(const st_file *f, const st_tensor *t, float *out, ked_error *err);

/* ------------------------------------------------------------------------------------------ */
/* writing                                                                                     */

typedef struct {
    const char *name;
    ked_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;         // numel * dtype size bytes (may be NULL when that is 0)
} st_write_tensor;

// st_write: write tensors in the given order, data packed contiguously (no holes, as the spec
// requires), the header padded with spaces to a multiple of 8 bytes (so the data section starts
// 8-aligned), optional "__metadata__" string pairs (n_meta may be 0 and the arrays NULL).
// Atomic: streams into "path.tmp.PID", fsyncs and renames; so data may point into an st_file
// mapped from `path` itself (the old inode stays mapped until st_close). Bad arguments
// (duplicate or empty names, "__metadata__" as a tensor name, ndim out of 0..8, negative dims,
// an unknown dtype, NULL data for a non-empty tensor, duplicate metadata keys) are KED_ERR_ARG.
ked_status st_write(const char *path, const st_write_tensor *tensors, int n,
                    const char *const *meta_keys, const char *const *meta_values, int n_meta,
                    ked_error *err);

/* ------------------------------------------------------------------------------------------ */
/* f16 / bf16 <-> f32                                                                          */

// Exact widening; the narrowing conversions round to nearest, ties to even, keep inf, keep NaN
// a NaN (quiet), and produce subnormals / signed zeros / inf as IEEE 754 says.
float ked_f16_to_f32(uint16_t h);
float ked_bf16_to_f32(uint16_t b);
uint16_t ked_f32_to_f16(float f);
uint16_t ked_f32_to_bf16(float f);
// bulk rows; src/dst may be unaligned byte buffers for the 16-bit side (little-endian, as stored)
void ked_f16_to_f32_row(const void *src, float *dst, size_t n);
void ked_bf16_to_f32_row(const void *src, float *dst, size_t n);
void ked_f32_to_f16_row(const float *src, void *dst, size_t n);
void ked_f32_to_bf16_row(const float *src, void *dst, size_t n);

// st_dtype_from_name: "F32" -> KED_F32 ...; returns -1 for an unknown name.
int st_dtype_from_name(const char *s);

/* ------------------------------------------------------------------------------------------ */
/* sharded checkpoints                                                                         */

typedef struct st_set st_set; // one or more safetensors files seen as one tensor namespace

// st_set_open_dir: `dir` may be
//   - a directory holding model.safetensors (preferred when both exist, as transformers does)
//     or model.safetensors.index.json and its shards,
//   - a path to an index file (*.json) or to one .safetensors file.
// The index must be {"weight_map": {"tensor": "shard file"}, "metadata": {...}?}; shard names are
// plain file names in the index's folder. Every shard is opened and validated; each listed tensor
// must be in the shard the index names; a name in two shards is an error. Tensors a shard holds
// but the index does not list are allowed and are part of the namespace (transformers loads
// every tensor of every listed shard, and an export must not drop them).
ked_status st_set_open_dir(const char *dir, st_set **out, ked_error *err);
void st_set_close(st_set *s);
int st_set_count(const st_set *s);
int st_set_file_count(const st_set *s);
const st_file *st_set_file(const st_set *s, int i);
// i-th tensor (shards in file-name order, each in data order); *file (if not NULL) gets its file
const st_tensor *st_set_get(const st_set *s, int i, const st_file **file);
const st_tensor *st_set_find(const st_set *s, const char *name, const st_file **file);
const char *st_set_metadata(const st_set *s, const char *key); // first file's __metadata__

// st_write_dir: write a loadable checkpoint folder (which must exist) the way transformers does:
// one model.safetensors when every tensor fits in max_shard_bytes (0: no limit), otherwise
// model-00001-of-0000N.safetensors ... (tensors in the given order, split greedily; a tensor
// larger than the limit gets a shard of its own) and model.safetensors.index.json with
// {"metadata": {"total_size": bytes}, "weight_map": {...}}. Each shard carries the metadata.
// Every file is written atomically, the index last; when sharding, a model.safetensors left from
// an earlier write is removed (it would shadow the index). Errors as st_write.
ked_status st_write_dir(const char *dir, const st_write_tensor *tensors, int n,
                        size_t max_shard_bytes, const char *const *meta_keys,
                        const char *const *meta_values, int n_meta, ked_error *err);

#endif
