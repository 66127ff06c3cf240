#include <sqlite3.h>

/// sqlite3_db_config is variadic, which Swift cannot call: one wrapper per setting used.
/// SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE (SQLite 3.28): closing the last connection leaves the WAL as
/// it is instead of checkpointing it into the database (and waiting for the disk twice more).
/// Returns SQLITE_OK when the setting took.
static inline int fedseg_sqlite_no_checkpoint_on_close(sqlite3 *db, int on) {
#ifdef SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE
    int now = -1;
    int rc = sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, on, &now);
    return (rc == SQLITE_OK && now == on) ? SQLITE_OK : SQLITE_ERROR;
#else
    (void)db; (void)on;
    return SQLITE_ERROR;
#endif
}
