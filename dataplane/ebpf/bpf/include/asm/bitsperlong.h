/* See types.h beside this file; BPF is a 64-bit target. */
#include <asm-generic/bitsperlong.h>
