/*
 * mpscan.h - a msgpack validator that trusts nothing it has not checked.
 *
 * mpscan walks the bytes of one msgpack object (any type: nil, bool, ints,
 * float32/64, str, bin, ext and fixext, arrays and maps nested to a cap)
 * and reports how many bytes it spans, without building anything.  It is
 * run in front of every msgpack-c unpack of peer input, because msgpack-c
 * reserves memory for whatever element count a header declares: once
 * mpscan has passed a buffer, every count in it is small and backed by
 * bytes, and the unpacker's allocations are bounded by the limits below.
 *
 * It allocates nothing, never recurses, and keeps its nesting stack in a
 * fixed array of MPSCAN_DEPTH_LIMIT entries.
 */
#ifndef NBX_MPSCAN_H
#define NBX_MPSCAN_H

#include <stddef.h>
#include <stdint.h>

/* Hard ceiling on mpscan_limits.max_depth (the size of the scan stack). */
#define MPSCAN_DEPTH_LIMIT	64

/*
 * What one object may declare.  Every field is an inclusive maximum.
 *
 *  max_depth    containers open at once: a scalar has depth 0, [1] depth 1,
 *               [[1]] depth 2.  An empty container counts like a full one.
 *               Values above MPSCAN_DEPTH_LIMIT act as MPSCAN_DEPTH_LIMIT.
 *  max_str      payload bytes of one str, bin or ext (fixext included).
 *  max_count    elements of one array, or pairs of one map.
 *  max_objects  objects in the whole tree, containers and map keys
 *               included ([1, 2] is three objects).
 *  max_size     encoded bytes of the whole object.  Every object still to
 *               come needs at least one byte, so a declared length or count
 *               that cannot fit in max_size is rejected the moment its
 *               header is read.  When the caller knows the object's exact
 *               extent (a frame body), passing max_size = len makes "a
 *               count larger than the bytes present" an error at once.
 */
struct mpscan_limits {
	uint32_t max_depth;
	uint32_t max_str;
	uint32_t max_count;
	uint32_t max_objects;
	size_t max_size;
};

/*
 * Validates the one msgpack object that starts at buf[0] within
 * buf[0..len).  Bytes after it are not looked at.
 *
 * Returns 0 and stores the object's encoded size in *size (<= len) on
 * success.  Otherwise *size is 0 and the return is:
 *  NBX_EAGAIN      buf holds a proper prefix of an object that is valid so
 *                  far and within the limits (len 0 included);
 *  NBX_EMALFORMED  a byte that is no msgpack type (0xc1);
 *  NBX_ETOOBIG     a str/bin/ext length over max_str, a count over
 *                  max_count, more than max_objects objects, or more bytes
 *                  than max_size (declared or needed);
 *  NBX_EDEPTH      a container opened deeper than max_depth;
 *  NBX_EINVAL      buf is NULL with len > 0, or lim or size is NULL.
 * Errors are reported as soon as the bytes seen prove them, so a hostile
 * header is refused before the bytes it announces arrive.
 */
int mpscan_object(const void *buf, size_t len,
    const struct mpscan_limits *lim, size_t *size);

#endif
