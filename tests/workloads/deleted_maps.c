/* Mappings of deleted files, and a deleted executable. The workload runs from a copy of
 * itself that it deletes (so /proc/self/exe is "... (deleted)"); it maps a file of
 * /dev/shm shared and writable, fills it through the mapping, keeps an fd of it and deletes
 * it (a POSIX shared memory segment unlinked while mapped); and maps a file of its own
 * directory private and read-only, then deletes it. After SIGTERM: the shared mapping
 * holds its bytes and is still the same file as the fd (a write through one shows through
 * the other), the private mapping holds its bytes, both show as deleted in
 * /proc/self/maps, and the executable is still the same bytes, shown deleted. */
#include "zoo.h"
#include <sys/mman.h>

enum {
	SHM_BYTES = 1, /* the shared mapping holds what was written through it */
	SHM_SAME_FILE, /* a pwrite through the fd shows in the mapping */
	PRIV_BYTES,    /* the private mapping of the deleted file holds its bytes */
	MAPS_DELETED,  /* both mappings show as deleted in /proc/self/maps */
	EXE_DELETED,   /* /proc/self/exe is the deleted copy, with the same size */
	ITEMS = EXE_DELETED
};

#define SHM_LEN (64 * 1024)
#define PRIV_LEN (3 * 4096)

static unsigned char pattern(size_t i, int salt)
{
	return (unsigned char)((i * 131 + (size_t)salt) % 251);
}

static int holds(const unsigned char *p, size_t len, int salt)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != pattern(i, salt))
			return 0;
	return 1;
}

/* Whether the line of /proc/self/maps at `addr` ends with " (deleted)". */
static int shown_deleted(const void *addr)
{
	char line[4096], want[32];
	FILE *f = fopen("/proc/self/maps", "r");
	int found = 0;

	if (!f)
		return 0;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, want, strlen(want)) == 0) {
			found = strstr(line, " (deleted)\n") != NULL;
			break;
		}
	fclose(f);
	return found;
}

/* Runs the workload from a deleted copy of itself: copies /proc/self/exe, execs the copy
 * with "--copy" (the environment, and so the harness's protocol, carries over). */
static void become_deleted_copy(char **argv)
{
	char path[4096], buf[65536];
	int in, out;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/exe-copy", zoo_tmp);
	in = open("/proc/self/exe", O_RDONLY);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0700);
	if (in < 0 || out < 0)
		zoo_die("copy exe");
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			zoo_die("write exe copy");
	close(in);
	close(out);
	execl(path, argv[0], "--copy", (char *)NULL);
	zoo_die("exec the copy");
}

int main(int argc, char **argv)
{
	char shm_name[64], path[4096], link[4096];
	unsigned char *shm, *priv;
	struct stat self, now;
	int shm_fd, fd;
	size_t i;
	ssize_t n;

	zoo_init(argc, argv, ITEMS);
	if (argc < 2 || strcmp(argv[argc - 1], "--copy") != 0)
		become_deleted_copy(argv);
	snprintf(path, sizeof(path), "%s/exe-copy", zoo_tmp);
	if (stat(path, &self) || unlink(path))
		zoo_die("delete the exe copy");

	snprintf(shm_name, sizeof(shm_name), "/dev/shm/crs-zoo-deleted-%d", getpid());
	shm_fd = open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (shm_fd < 0 || ftruncate(shm_fd, SHM_LEN))
		zoo_die("shm file");
	shm = mmap(NULL, SHM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
	if (shm == MAP_FAILED)
		zoo_die("mmap shm");
	for (i = 0; i < SHM_LEN; i++)
		shm[i] = pattern(i, 1);
	if (unlink(shm_name))
		zoo_die("unlink shm");

	fd = open("private.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		zoo_die("private file");
	for (i = 0; i < PRIV_LEN; i++) {
		unsigned char c = pattern(i, 2);

		if (write(fd, &c, 1) != 1)
			zoo_die("write private file");
	}
	priv = mmap(NULL, PRIV_LEN, PROT_READ, MAP_PRIVATE, fd, 0);
	if (priv == MAP_FAILED)
		zoo_die("mmap private");
	close(fd);
	if (unlink("private.bin"))
		zoo_die("unlink private");

	zoo_ready();
	if (ZOO_BREAK(SHM_BYTES))
		shm[100] ^= 0xff;
	if (ZOO_BREAK(SHM_SAME_FILE)) {
		/* The fd now names another file: a write through it misses the mapping. */
		int other = open("other.bin", O_RDWR | O_CREAT, 0600);

		if (other < 0 || ftruncate(other, SHM_LEN) || dup2(other, shm_fd) < 0)
			zoo_die("replace shm fd");
		close(other);
	}
	if (ZOO_BREAK(PRIV_BYTES) && mprotect(priv, PRIV_LEN, PROT_READ | PROT_WRITE) == 0)
		priv[5] ^= 0xff;
	if (ZOO_BREAK(MAPS_DELETED)) {
		/* A new mapping of a file that exists takes the place of the private one. */
		fd = open("visible.bin", O_RDWR | O_CREAT, 0600);
		if (fd < 0 || ftruncate(fd, PRIV_LEN) ||
		    mmap(priv, PRIV_LEN, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) != priv)
			zoo_die("replace the private mapping");
		close(fd);
		/* ... and keeps the private mapping's bytes for the item above. */
		if (mprotect(priv, PRIV_LEN, PROT_READ | PROT_WRITE))
			zoo_die("mprotect");
		for (i = 0; i < PRIV_LEN; i++)
			priv[i] = pattern(i, 2);
	}
	if (ZOO_BREAK(EXE_DELETED) && close(open(path, O_WRONLY | O_CREAT, 0600)))
		zoo_die("create a file at the exe's path");
	zoo_wait();

	ZOO_CHECK(SHM_BYTES, holds(shm, SHM_LEN, 1), "the deleted shared mapping lost its bytes");
	n = pwrite(shm_fd, "Z", 1, 7);
	ZOO_CHECK(SHM_SAME_FILE, n == 1 && shm[7] == 'Z',
		  "a write through the fd does not show in the shared mapping");
	ZOO_CHECK(PRIV_BYTES, holds(priv, PRIV_LEN, 2),
		  "the private mapping of the deleted file lost its bytes");
	ZOO_CHECK(MAPS_DELETED, shown_deleted(shm) && shown_deleted(priv),
		  "the mappings are not shown as deleted in /proc/self/maps");
	n = readlink("/proc/self/exe", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	ZOO_CHECK(EXE_DELETED,
		  n > 0 && strstr(link, " (deleted)") && stat("/proc/self/exe", &now) == 0 &&
			  now.st_size == self.st_size && access(path, F_OK) != 0,
		  "the executable is not the deleted copy (%s)", link);
	return zoo_done();
}
