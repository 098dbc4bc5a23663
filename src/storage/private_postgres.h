// A private PostgreSQL server in a folder of its own, from Debian's packages: for
// `meridian dev --storage postgres` and the tests. It listens on a Unix socket in that
// folder only (no TCP port), runs as an unprivileged user (the package's `postgres` when
// started by root) and keeps fsync on, so a commit it acknowledges is on disk.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace meridian::storage {

class PrivatePostgres {
 public:
  // Creates the cluster in `dir` (initdb) unless it is there, and starts the server.
  static Result<std::unique_ptr<PrivatePostgres>> Start(const std::string& dir);
  ~PrivatePostgres();  // a fast shutdown (SIGINT), SIGKILL if it lingers

  // A connection URL for `database` (created by CreateDatabase).
  std::string Url(const std::string& database) const { return UrlAt(dir_, database); }
  // The same for the server whose folder is `dir`, running or not.
  static std::string UrlAt(const std::string& dir, const std::string& database);
  Status CreateDatabase(const std::string& name);
  // Kills the server with SIGKILL (a crash) and starts it again on the same folder.
  Status CrashAndRestart();
  // PostgreSQL's own benchmark on this server, as the peer of what Meridian does on it:
  // creates `database`, loads it (`pgbench -i -s scale`), then runs `pgbench -N` (one
  // durable transaction of three writes and a read per call) with `clients` for `seconds`.
  // Returns the transactions per second pgbench reports.
  Result<double> Pgbench(const std::string& database, int scale, int clients, int seconds);
  pid_t pid() const { return pid_; }

 private:
  PrivatePostgres() = default;
  Status Launch();
  std::string dir_;
  std::string bin_;
  pid_t pid_ = -1;
};

}  // namespace meridian::storage
