#define _GNU_SOURCE
#include "process_spawn.h"

#include <fcntl.h>
#include <spawn.h>

extern char **environ;

int fedseg_spawn_closing_descriptors(const char *const argv[], const char *output_path, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    int result = posix_spawn_file_actions_init(&actions);
    if (result != 0) return result;
    if ((result = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)) == 0 &&
        (result = posix_spawn_file_actions_addopen(&actions, 1, output_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == 0 &&
        (result = posix_spawn_file_actions_adddup2(&actions, 1, 2)) == 0 &&
        (result = posix_spawn_file_actions_addclosefrom_np(&actions, 3)) == 0) {
        result = posix_spawn(pid, argv[0], &actions, NULL, (char *const *)argv, environ);
    }
    posix_spawn_file_actions_destroy(&actions);
    return result;
}
