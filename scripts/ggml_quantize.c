// Quantizes one float32 matrix with ggml's own quantizer and writes the raw blocks.
//
//   ggml_quantize INPUT.npy TYPE OUT.bin
//
// INPUT.npy: a 2-D little-endian float32 ('<f4'), C-order array of R rows x C columns.
// TYPE: a ggml type name as ggml_type_name() spells it, compared case-insensitively
// (q4_0, q4_K, iq2_xxs, mxfp4, ...). OUT.bin receives exactly the bytes of
//   ggml_quantize_chunk(TYPE, data, out, 0, R, C, imatrix)
// where imatrix is NULL, unless ggml_quantize_requires_imatrix(TYPE): then it is C floats
// of 1.0. One line of JSON describing the run goes to stdout. Any failure of ggml (an
// assertion) aborts the process, so callers run one (input, type) per process.
//
// Built and used by scripts/ggml_quant_fixtures.sh against ggml-base only: the quantizers
// ggml_quantize_chunk calls live in ggml-quants.c and are plain C, independent of the
// CPU backend's SIMD kernels.
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"

static void die(const char * msg, const char * arg) {
    fprintf(stderr, "ggml_quantize: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(2);
}

// Finds the integer following `key` (e.g. "'shape':") in the header, skipping to its tuple.
static const char * find_after(const char * hdr, const char * key) {
    const char * p = strstr(hdr, key);
    return p ? p + strlen(key) : NULL;
}

// Reads a version 1/2/3 .npy file holding a 2-D '<f4' C-order array.
static float * read_npy_f32_2d(const char * path, int64_t * rows, int64_t * cols) {
    FILE * f = fopen(path, "rb");
    if (!f) die("cannot open", path);
    unsigned char pre[10];
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) die("not a .npy file", path);
    uint32_t hlen;
    if (pre[6] == 1) {
        if (fread(pre + 8, 1, 2, f) != 2) die("truncated header", path);
        hlen = (uint32_t) pre[8] | ((uint32_t) pre[9] << 8);
    } else {
        unsigned char b[4];
        if (fread(b, 1, 4, f) != 4) die("truncated header", path);
        hlen = (uint32_t) b[0] | ((uint32_t) b[1] << 8) | ((uint32_t) b[2] << 16) | ((uint32_t) b[3] << 24);
    }
    char * hdr = calloc(hlen + 1, 1);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) die("truncated header", path);

    const char * d = find_after(hdr, "'descr':");
    if (!d) die("no descr in header", path);
    while (*d == ' ') d++;
    if (strncmp(d, "'<f4'", 5) != 0) die("dtype is not '<f4'", path);
    const char * fo = find_after(hdr, "'fortran_order':");
    if (!fo) die("no fortran_order in header", path);
    while (*fo == ' ') fo++;
    if (strncmp(fo, "False", 5) != 0) die("array is Fortran-ordered", path);
    const char * s = find_after(hdr, "'shape':");
    if (!s) die("no shape in header", path);
    long long r = 0, c = 0;
    if (sscanf(s, " (%lld, %lld)", &r, &c) != 2 || r <= 0 || c <= 0) die("shape is not 2-D", path);
    free(hdr);

    size_t n = (size_t) r * (size_t) c;
    float * data = malloc(n * sizeof(float));
    if (!data) die("out of memory", NULL);
    if (fread(data, sizeof(float), n, f) != n) die("truncated data", path);
    // Nothing may follow the array.
    if (fgetc(f) != EOF) die("trailing bytes after the array", path);
    fclose(f);
    // This host is little-endian (x86-64, aarch64); '<f4' needs no swap.
    *rows = r;
    *cols = c;
    return data;
}

static int same_name(const char * a, const char * b) {
    for (; *a && *b; a++, b++) {
        if (tolower((unsigned char) *a) != tolower((unsigned char) *b)) return 0;
    }
    return *a == *b;
}

static enum ggml_type parse_type(const char * name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * tn = ggml_type_name((enum ggml_type) t);
        if (tn && same_name(tn, name) && ggml_blck_size((enum ggml_type) t) > 0) return (enum ggml_type) t;
    }
    die("unknown ggml type", name);
    return GGML_TYPE_COUNT;
}

int main(int argc, char ** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s INPUT.npy TYPE OUT.bin\n", argv[0]);
        return 2;
    }
    const enum ggml_type type = parse_type(argv[2]);
    int64_t rows, cols;
    float * src = read_npy_f32_2d(argv[1], &rows, &cols);
    if (cols % ggml_blck_size(type) != 0) die("columns are not a multiple of the block size", argv[2]);

    const int needs_imatrix = ggml_quantize_requires_imatrix(type);
    float * imatrix = NULL;
    if (needs_imatrix) {
        imatrix = malloc((size_t) cols * sizeof(float));
        if (!imatrix) die("out of memory", NULL);
        for (int64_t i = 0; i < cols; i++) imatrix[i] = 1.0f;
    }

    const size_t row_size = ggml_row_size(type, cols);
    const size_t total = row_size * (size_t) rows;
    void * dst = calloc(total, 1);
    if (!dst) die("out of memory", NULL);

    ggml_quantize_init(type);  // builds the i-quant grids; a no-op for the other types
    const size_t written = ggml_quantize_chunk(type, src, dst, 0, rows, cols, imatrix);
    if (written != total) die("ggml_quantize_chunk wrote an unexpected size", NULL);
    const int valid = ggml_validate_row_data(type, dst, total);

    FILE * out = fopen(argv[3], "wb");
    if (!out) die("cannot create", argv[3]);
    if (fwrite(dst, 1, total, out) != total || fclose(out) != 0) die("cannot write", argv[3]);

    printf("{\"type\": \"%s\", \"type_id\": %d, \"rows\": %lld, \"n_per_row\": %lld, \"bytes\": %zu, "
           "\"requires_imatrix\": %s, \"imatrix\": %s, \"valid_row_data\": %s, "
           "\"ggml_version\": \"%s\", \"ggml_commit\": \"%s\"}\n",
           ggml_type_name(type), (int) type, (long long) rows, (long long) cols, total,
           needs_imatrix ? "true" : "false", needs_imatrix ? "\"all-ones\"" : "null",
           valid ? "true" : "false", ggml_version(), ggml_commit());

    ggml_quantize_free();
    free(dst);
    free(imatrix);
    free(src);
    return 0;
}
