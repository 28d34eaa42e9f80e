/* Thread-local storage: __thread variables (initialised and zero-initialised) and the
 * fs base they hang off. */
#include "zoo.h"
#include <asm/prctl.h>
#include <sys/syscall.h>

static __thread uint64_t tls_counter = 0x1111222233334444ULL;
static __thread char tls_buf[512];

static unsigned long fs_base(void)
{
	unsigned long v = 0;

	syscall(SYS_arch_prctl, ARCH_GET_FS, &v);
	return v;
}

int main(int argc, char **argv)
{
	unsigned long fs;
	uint64_t *addr;
	uint64_t buf_hash;

	zoo_init(argc, argv);
	tls_counter += 0x0101;
	zoo_fill(tls_buf, sizeof(tls_buf), 77);
	buf_hash = zoo_hash(tls_buf, sizeof(tls_buf));
	fs = fs_base();
	addr = &tls_counter;

	zoo_ready();
	if (zoo_corrupt)
		tls_buf[3] ^= 1;
	zoo_wait();

	ZOO_CHECK(fs_base() == fs, "fs base %#lx, want %#lx", fs_base(), fs);
	ZOO_CHECK(&tls_counter == addr, "&tls_counter moved");
	ZOO_CHECK(tls_counter == 0x1111222233334444ULL + 0x0101, "tls_counter %#llx",
		  (unsigned long long)tls_counter);
	ZOO_CHECK(zoo_hash(tls_buf, sizeof(tls_buf)) == buf_hash, "tls_buf differs");
	return zoo_done();
}
