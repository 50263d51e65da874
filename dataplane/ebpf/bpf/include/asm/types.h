/* The build host's <asm/types.h> lives in a multiarch directory that a
 * -target bpf compile does not search; every Linux architecture's version
 * is this one line. */
#include <asm-generic/types.h>
