/* cwd in a directory of its own, and a umask. After the restore the cwd is that directory
 * (getcwd, and a file created by a relative path lands there) and the umask is 027 (its
 * value, and the mode a new file gets). */
#include "zoo.h"
#include <sys/stat.h>

enum { CWD = 1, UMASK, ITEMS = UMASK };

int main(int argc, char **argv)
{
	char *dir, *made, cwd[4096] = "";
	mode_t old;
	struct stat st, at;
	int fd;

	zoo_init(argc, argv, ITEMS);
	dir = zoo_path("work dir");
	made = zoo_path("work dir/made-after");
	if (mkdir(dir, 0750) || chdir(dir))
		zoo_die("mkdir/chdir");
	umask(0027);

	zoo_ready();
	if (ZOO_BREAK(CWD) && chdir(zoo_tmp))
		zoo_die("chdir");
	if (ZOO_BREAK(UMASK))
		umask(0022);
	zoo_wait();

	old = umask(0);
	umask(old);
	fd = open("made-after", O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
	if (fd < 0 || fstat(fd, &st))
		zoo_die("create made-after in the cwd");
	ZOO_CHECK(CWD,
		  getcwd(cwd, sizeof(cwd)) && strcmp(cwd, dir) == 0 && stat(made, &at) == 0 &&
			  at.st_ino == st.st_ino,
		  "cwd %s, want %s (where relative paths resolve)", cwd, dir);
	ZOO_CHECK(UMASK, old == 0027 && (st.st_mode & 0777) == 0640,
		  "umask %03o and a new file's mode %o, want 027 and 640", old, st.st_mode & 0777);
	close(fd);
	return zoo_done();
}
