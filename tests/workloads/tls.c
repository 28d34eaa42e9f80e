/* Thread-local storage: __thread variables (initialised and zero-initialised) and the
 * fs base they hang off. */
#include "zoo.h"
#include <asm/prctl.h>
#include <link.h>
#include <sys/syscall.h>

enum {
	FS = 1,  /* the fs base, and so where the TLS variables are */
	COUNTER, /* an initialised __thread variable's value */
	BUF,     /* a zero-initialised __thread array's contents */
	ITEMS = BUF
};

/* What the break of FS copies above the fs base: the thread control block (glibc's
 * struct pthread, about 2.3 KiB). Below it lies the static TLS block. */
#define ABOVE 4096

static __thread uint64_t tls_counter = 0x1111222233334444ULL;
static __thread char tls_buf[512];

static unsigned long fs_base(void)
{
	unsigned long v = 0;

	syscall(SYS_arch_prctl, ARCH_GET_FS, &v);
	return v;
}

static void set_fs(unsigned long v)
{
	if (syscall(SYS_arch_prctl, ARCH_SET_FS, v))
		zoo_die("ARCH_SET_FS");
}

/* The size of the static TLS block (PT_TLS rounded to its alignment). */
static int tls_size(struct dl_phdr_info *info, size_t size, void *data)
{
	int i;

	(void)size;
	for (i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_TLS) {
			size_t a = info->dlpi_phdr[i].p_align ? info->dlpi_phdr[i].p_align : 1;

			*(size_t *)data = (info->dlpi_phdr[i].p_memsz + a - 1) / a * a;
			return 1;
		}
	return 0;
}

/* Moves the thread's TLS to a copy: the same values at other addresses. */
static unsigned char *move_tls(unsigned long fs)
{
	size_t below = 0;
	unsigned char *copy, *at;

	dl_iterate_phdr(tls_size, &below);
	copy = aligned_alloc(64, below + ABOVE + 128);
	if (!below || !copy)
		zoo_die("copy the TLS");
	at = copy + (below + 63) / 64 * 64 + (fs & 63);
	memcpy(at - below, (void *)(fs - below), below + ABOVE);
	/* The control block points at itself (its tcb and self fields). */
	memcpy(at, &at, sizeof(at));
	memcpy(at + 16, &at, sizeof(at));
	set_fs((unsigned long)at);
	return at;
}

int main(int argc, char **argv)
{
	unsigned long fs, fs_now;
	uint64_t *addr, *addr_now;
	uint64_t buf_hash;

	zoo_init(argc, argv, ITEMS);
	tls_counter += 0x0101;
	zoo_fill(tls_buf, sizeof(tls_buf), 77);
	buf_hash = zoo_hash(tls_buf, sizeof(tls_buf));
	fs = fs_base();
	addr = &tls_counter;

	zoo_ready();
	if (ZOO_BREAK(FS))
		move_tls(fs);
	if (ZOO_BREAK(COUNTER))
		tls_counter++;
	if (ZOO_BREAK(BUF))
		tls_buf[3] ^= 1;
	zoo_wait();

	fs_now = fs_base();
	addr_now = &tls_counter;
	ZOO_CHECK(FS, fs_now == fs && addr_now == addr, "fs base %#lx, &tls_counter %p, want %#lx, %p",
		  fs_now, (void *)addr_now, fs, (void *)addr);
	ZOO_CHECK(COUNTER, tls_counter == 0x1111222233334444ULL + 0x0101, "tls_counter %#llx",
		  (unsigned long long)tls_counter);
	ZOO_CHECK(BUF, zoo_hash(tls_buf, sizeof(tls_buf)) == buf_hash, "tls_buf differs");
	if (fs_now != fs)
		set_fs(fs); /* back where glibc's bookkeeping is, for exit */
	return zoo_done();
}
