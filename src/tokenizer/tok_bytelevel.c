// tok_bytelevel.c: GPT-2's byte-level character map (bytes_to_unicode in OpenAI's encoder.py):
// printable Latin-1 bytes stand for themselves, the other 68 bytes for U+0100.. in order.
#include "tokenizer/tok_internal.h"

#include <pthread.h>

static tok_bytechar byte_chars[256];
static int16_t cp_byte[512]; // code point -> byte, -1
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static void build(void) {
    for (int i = 0; i < 512; i++) cp_byte[i] = -1;
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int cp = printable(b) ? b : next++;
        cp_byte[cp] = (int16_t)b;
        tok_bytechar *c = &byte_chars[b];
        if (cp < 0x80) {
            c->s[0] = (char)cp;
            c->len = 1;
        } else {
            c->s[0] = (char)(0xC0 | (cp >> 6));
            c->s[1] = (char)(0x80 | (cp & 0x3F));
            c->len = 2;
        }
    }
}

const tok_bytechar *tok_byte_chars(void) {
    pthread_once(&once, build);
    return byte_chars;
}

int tok_byte_of_codepoint(int32_t cp) {
    pthread_once(&once, build);
    if (cp < 0 || cp >= 512) return -1;
    return cp_byte[cp];
}
