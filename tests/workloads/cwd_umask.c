/* cwd in a directory of its own (with a relative file opened there), and a umask. */
#include "zoo.h"
#include <sys/stat.h>

int main(int argc, char **argv)
{
	char *dir, cwd[4096];
	mode_t old;
	struct stat st;

	zoo_init(argc, argv);
	dir = zoo_path("work dir");
	if (mkdir(dir, 0750) || chdir(dir))
		zoo_die("mkdir/chdir");
	umask(0027);

	zoo_ready();
	if (zoo_corrupt)
		umask(0022);
	zoo_wait();

	ZOO_CHECK(getcwd(cwd, sizeof(cwd)) && strcmp(cwd, dir) == 0, "cwd %s, want %s", cwd, dir);
	old = umask(0);
	ZOO_CHECK(old == 0027, "umask %03o, want 027", old);
	umask(old);
	/* Relative paths resolve in the restored cwd, the umask applies to new files. */
	{
		int fd = open("made-after", O_CREAT | O_WRONLY, 0666);

		ZOO_CHECK(fd >= 0, "create in cwd: %s", strerror(errno));
		close(fd);
	}
	{
		char *made = zoo_path("work dir/made-after");

		ZOO_CHECK(stat(made, &st) == 0 && (st.st_mode & 0777) == 0640,
			  "made-after mode %o, want 640", st.st_mode & 0777);
	}
	return zoo_done();
}
