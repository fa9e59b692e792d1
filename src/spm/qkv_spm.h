// The C interface of libqkv_spm.so, the shim that carries SentencePiece (Kudo & Richardson 2018).
//
// Why a shim: libsentencepiece embeds its own protobuf, which clashes with libtorch's libprotobuf when
// both are linked into one program (a crash during static initialisation). qkv therefore never links
// SentencePiece; it loads this library with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) when a SentencePiece
// model is used (src/data/sentencepiece.cpp), and only plain C types cross the boundary.
//
// Conventions: functions that can fail return 0 on success and -1 on failure, with the reason in
// qkv_spm_last_error() (per thread). Functions that produce text or ids write into a caller's buffer of
// `capacity` elements and return the number of elements needed (excluding the terminating NUL for
// text): when that exceeds the capacity, nothing usable was written and the caller retries with a
// buffer of that size. Pieces cross the boundary joined by single spaces; SentencePiece pieces never
// contain an ASCII space (it is rewritten to U+2581 "▁").
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever a signature below changes; the loader refuses a library of another version.
#define QKV_SPM_ABI_VERSION 1

typedef struct qkv_spm_model qkv_spm_model;

// Returns the next training sentence (not NUL-terminated; length in *length), or NULL at the end.
// NULL with *length == QKV_SPM_INPUT_FAILED stops training with an error (the caller knows why).
#define QKV_SPM_INPUT_FAILED ((size_t)-1)
typedef const char* (*qkv_spm_next_line)(void* context, size_t* length);

int qkv_spm_abi_version(void);
const char* qkv_spm_last_error(void);

// Trains a model from the sentences `next_line` yields. `keys`/`values` are SentencePiece trainer
// flags without the leading dashes (e.g. "model_prefix" -> "out/spm", "vocab_size" -> "8000").
int qkv_spm_train(const char* const* keys, const char* const* values, size_t count,
                  qkv_spm_next_line next_line, void* context);

// Loads a trained model file; returns NULL on failure. qkv_spm_free releases it (NULL is a no-op).
qkv_spm_model* qkv_spm_load(const char* path);
void qkv_spm_free(qkv_spm_model* model);

// Line -> ids / space-joined pieces. Return the number of ids / bytes needed, or -1 on failure.
int64_t qkv_spm_encode_ids(const qkv_spm_model* model, const char* text, size_t length, int32_t* ids,
                           size_t capacity);
int64_t qkv_spm_encode_pieces(const qkv_spm_model* model, const char* text, size_t length, char* out,
                              size_t capacity);

// Ids / space-joined pieces -> detokenized text. Return the number of bytes needed, or -1 on failure.
int64_t qkv_spm_decode_ids(const qkv_spm_model* model, const int32_t* ids, size_t count, char* out,
                           size_t capacity);
int64_t qkv_spm_decode_pieces(const qkv_spm_model* model, const char* pieces, size_t length, char* out,
                              size_t capacity);

// The vocabulary. piece_to_id returns the unknown id for a piece not in the vocabulary.
int32_t qkv_spm_vocab_size(const qkv_spm_model* model);
int64_t qkv_spm_id_to_piece(const qkv_spm_model* model, int32_t id, char* out, size_t capacity);
int32_t qkv_spm_piece_to_id(const qkv_spm_model* model, const char* piece, size_t length);

#ifdef __cplusplus
}
#endif
