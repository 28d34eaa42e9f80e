/*
 * Deleted directories held as the cwd and as an open fd.
 *
 * P makes directories D (mode 0710) and E in its scratch directory, chdirs into D, opens
 * E (O_DIRECTORY), and removes both. After SIGTERM it checks that its cwd is still D
 * ("D (deleted)", mode 0710, empty) and that its fd is still the deleted E.
 */
#include "zoo.h"

#include <limits.h>

enum {
	CWD_DELETED = 1, /* the cwd is the deleted D, its name and mode */
	FD_DELETED,      /* the fd is the deleted E */
	ITEMS = FD_DELETED
};

/* Whether link `link` reads "`path` (deleted)". */
static int deleted_link(const char *link, const char *path)
{
	char got[PATH_MAX], want[PATH_MAX + 16];
	ssize_t n = readlink(link, got, sizeof(got) - 1);

	if (n < 0)
		return 0;
	got[n] = 0;
	snprintf(want, sizeof(want), "%s (deleted)", path);
	return strcmp(got, want) == 0;
}

int main(int argc, char **argv)
{
	char d[PATH_MAX], e[PATH_MAX], link[64];
	struct stat st;
	int fd;

	zoo_init(argc, argv, ITEMS);
	snprintf(d, sizeof(d), "%s/dir-d", zoo_tmp);
	snprintf(e, sizeof(e), "%s/dir-e", zoo_tmp);
	if (mkdir(d, 0710) || mkdir(e, 0700))
		zoo_die("mkdir");
	if (chmod(d, 0710))
		zoo_die("chmod");
	fd = open(e, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || chdir(d))
		zoo_die("open/chdir");
	if (rmdir(d) || rmdir(e))
		zoo_die("rmdir");
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);

	zoo_ready();
	if (ZOO_BREAK(CWD_DELETED) && chdir(zoo_tmp))
		zoo_die("chdir back");
	if (ZOO_BREAK(FD_DELETED)) {
		int other = open(zoo_tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (other < 0 || dup3(other, fd, O_CLOEXEC) != fd)
			zoo_die("replace the fd");
		close(other);
	}
	zoo_wait();

	ZOO_CHECK(CWD_DELETED,
		  deleted_link("/proc/self/cwd", d) && stat(".", &st) == 0 &&
			  S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0710,
		  "the cwd is not the deleted %s with mode 0710", d);
	ZOO_CHECK(FD_DELETED, deleted_link(link, e) && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode),
		  "fd %d is not the deleted %s", fd, e);
	return zoo_done();
}
