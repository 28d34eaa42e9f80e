/*
 * A read-only MAP_SHARED mapping of a file opened read-write (fd closed) must stay
 * mprotect-able to PROT_WRITE after restore: the restored mapping needs a read-write
 * file behind it, as the original had (criu records the open mode from map_files).
 * After SIGTERM: mprotect(PROT_WRITE), write through the mapping, read it back with
 * pread from a fresh open.
 */
#include "zoo.h"

#include <sys/mman.h>

enum { WRITABLE = 1, ITEMS = WRITABLE };

int main(int argc, char **argv)
{
	char path[4096], buf[8];
	unsigned char *m;
	int fd;

	zoo_init(argc, argv, ITEMS);
	snprintf(path, sizeof(path), "%s/map_prot.data", zoo_tmp);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096))
		zoo_die("create data file");
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		zoo_die("mmap");
	close(fd);
	zoo_ready();
	if (ZOO_BREAK(WRITABLE)) {
		/* A read-only file behind the mapping: what a wrong restore would give. */
		munmap(m, 4096);
		fd = open(path, O_RDONLY);
		m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
		close(fd);
	}
	zoo_wait();

	if (mprotect(m, 4096, PROT_READ | PROT_WRITE)) {
		zoo_fail(WRITABLE, "mprotect(PROT_WRITE): %s", strerror(errno));
	} else {
		memcpy(m + 100, "crsprot", 7);
		msync(m, 4096, MS_SYNC);
		fd = open(path, O_RDONLY);
		ZOO_CHECK(WRITABLE, fd >= 0 && pread(fd, buf, 7, 100) == 7 && !memcmp(buf, "crsprot", 7),
			  "write through the mapping not in the file");
		close(fd);
	}
	return zoo_done();
}
