#include "storage/private_postgres.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/file.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <pqxx/pqxx>

namespace meridian::storage {
namespace {

namespace fs = std::filesystem;

// The newest installed server's binaries (/usr/lib/postgresql/<major>/bin).
std::string FindBin() {
  std::string best;
  int best_major = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int major = std::atoi(e.path().filename().c_str());
    if (major > best_major && fs::exists(e.path() / "bin" / "postgres")) {
      best_major = major;
      best = (e.path() / "bin").string();
    }
  }
  return best;
}

// PostgreSQL refuses to run as root: then it runs as the package's `postgres` user.
const passwd* RunAs() { return geteuid() == 0 ? getpwnam("postgres") : nullptr; }

// fork + exec with stdout/stderr to `log`; returns the child's pid.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  const passwd* user = RunAs();
  pid_t pid = fork();
  if (pid != 0) return pid;
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
  }
  setsid();  // its own process group: a terminal's Ctrl-C reaches the parent only
  if (user != nullptr && (setgid(user->pw_gid) != 0 || setuid(user->pw_uid) != 0)) _exit(126);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int WaitExit(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Status GiveTo(const passwd* user, const std::string& path, bool recursive = false) {
  if (user == nullptr) return Status::Ok();
  bool ok = chown(path.c_str(), user->pw_uid, user->pw_gid) == 0;
  std::error_code ec;
  if (recursive) {
    for (const auto& e : fs::recursive_directory_iterator(path, ec)) {
      ok &= lchown(e.path().c_str(), user->pw_uid, user->pw_gid) == 0;
    }
  }
  if (!ok || ec) {
    return Error(Code::kInternal, "cannot hand the database folder to the postgres user");
  }
  return Status::Ok();
}

// A server left running by a supervisor that was killed (its folder is ours alone): stop
// it before starting a new one on the same data.
void StopLeftover(const std::string& data) {
  std::ifstream in(data + "/postmaster.pid");
  pid_t pid = 0;
  if (!(in >> pid) || pid <= 0 || kill(pid, 0) != 0) return;
  kill(pid, SIGINT);
  for (int i = 0; i < 200 && kill(pid, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// initdb takes seconds; a cluster made once per machine and user is copied instead (the
// copy is a fresh cluster: nothing was ever stored in the template).
Status CreateCluster(const std::string& bin, const std::string& dir, const passwd* user) {
  const std::string tmpl = (fs::temp_directory_path() /
                            fmt::format("meridian-pg-template-{}-{}",
                                        fs::path(bin).parent_path().filename().string(), geteuid()))
                               .string();
  std::error_code ec;
  fs::create_directories(tmpl, ec);
  RETURN_IF_ERROR(GiveTo(user, tmpl));
  int lock = ::open((tmpl + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0) return Error(Code::kUnavailable, "cannot lock the PostgreSQL template");
  flock(lock, LOCK_EX);  // parallel tests: one initdb, the others wait and copy
  Status st = Status::Ok();
  if (!fs::exists(tmpl + "/data/PG_VERSION")) {
    fs::remove_all(tmpl + "/data", ec);
    // --no-sync: only initdb's own files skip fsync; a running server keeps it on.
    pid_t pid = Spawn({bin + "/initdb", "-D", tmpl + "/data", "-U", "meridian", "-A", "trust", "-E",
                       "UTF8", "--no-sync", "--no-instructions"},
                      tmpl + "/initdb.log");
    if (pid < 0 || WaitExit(pid) != 0) {
      st = Error(Code::kUnavailable, "initdb failed; see " + tmpl + "/initdb.log");
    }
  }
  if (st.ok()) {
    fs::copy(tmpl + "/data", dir + "/data", fs::copy_options::recursive, ec);
    if (ec) st = Error(Code::kUnavailable, "cannot copy the PostgreSQL template");
  }
  flock(lock, LOCK_UN);
  close(lock);
  RETURN_IF_ERROR(st);
  fs::permissions(dir + "/data", fs::perms::owner_all, ec);  // PostgreSQL insists on 0700
  return GiveTo(user, dir + "/data", /*recursive=*/true);
}

}  // namespace

Result<std::unique_ptr<PrivatePostgres>> PrivatePostgres::Start(const std::string& dir) {
  std::unique_ptr<PrivatePostgres> pg(new PrivatePostgres());
  pg->dir_ = fs::absolute(dir).string();
  pg->bin_ = FindBin();
  if (pg->bin_.empty()) {
    return Error(Code::kUnavailable,
                 "PostgreSQL is not installed (Debian package postgresql; scripts/install-deps)");
  }
  std::error_code ec;
  fs::create_directories(pg->dir_, ec);
  const passwd* user = RunAs();
  if (geteuid() == 0 && user == nullptr) {
    return Error(Code::kUnavailable, "running as root needs the postgres user of the package");
  }
  RETURN_IF_ERROR(GiveTo(user, pg->dir_));
  if (user != nullptr) {
    // The server runs as `postgres`: every folder above its own must let it through.
    for (fs::path p = fs::path(pg->dir_).parent_path(); p != p.root_path(); p = p.parent_path()) {
      struct stat st {};
      if (stat(p.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0 && st.st_uid != user->pw_uid) {
        return Error(Code::kUnavailable,
                     "the postgres user cannot reach " + pg->dir_ + ": " + p.string() +
                         " is closed to other users (chmod o+x it, or run as a normal user)");
      }
    }
  }
  if (!fs::exists(pg->dir_ + "/data/PG_VERSION")) {
    RETURN_IF_ERROR(CreateCluster(pg->bin_, pg->dir_, user));
  } else {
    StopLeftover(pg->dir_ + "/data");
  }
  RETURN_IF_ERROR(pg->Launch());
  return pg;
}

Status PrivatePostgres::Launch() {
  pid_ = Spawn({bin_ + "/postgres", "-D", dir_ + "/data", "-k", dir_, "-c",
                "listen_addresses=", "-c", "fsync=on", "-c", "synchronous_commit=on", "-c",
                "max_connections=200", "-c", "shared_buffers=64MB"},
               dir_ + "/postgres.log");
  if (pid_ < 0) return Error(Code::kUnavailable, "cannot start postgres");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Error(Code::kUnavailable, "postgres exited at start; see " + dir_ + "/postgres.log");
    }
    try {
      pqxx::connection c(Url("postgres"));
      return Status::Ok();
    } catch (const std::exception&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return Error(Code::kUnavailable, "postgres did not accept connections within 60 s");
}

PrivatePostgres::~PrivatePostgres() {
  if (pid_ <= 0) return;
  kill(pid_, SIGINT);  // fast shutdown: disconnects clients, then a clean checkpoint
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

std::string PrivatePostgres::UrlAt(const std::string& dir, const std::string& database) {
  return fmt::format("postgresql:///{}?host={}&user=meridian", database,
                     fs::absolute(dir).lexically_normal().string());
}

Result<double> PrivatePostgres::Pgbench(const std::string& database, int scale, int clients,
                                        int seconds) {
  RETURN_IF_ERROR(CreateDatabase(database));
  const std::string url = Url(database);
  const std::string log = dir_ + "/pgbench.log";
  std::error_code ec;
  fs::remove(log, ec);
  if (WaitExit(Spawn({bin_ + "/pgbench", "-i", "-q", "-s", std::to_string(scale), url}, log)) !=
      0) {
    return Error(Code::kInternal, "pgbench -i failed: " + ReadText(log).substr(0, 500));
  }
  const std::string threads = std::to_string(std::min(clients, 2));
  if (WaitExit(Spawn({bin_ + "/pgbench", "-N", "-c", std::to_string(clients), "-j", threads, "-T",
                      std::to_string(seconds), url},
                     log)) != 0) {
    return Error(Code::kInternal, "pgbench failed: " + ReadText(log).substr(0, 500));
  }
  // "tps = 1234.567890 (without initial connection time)"
  const std::string out = ReadText(log);
  const size_t at = out.rfind("tps = ");
  if (at == std::string::npos) return Error(Code::kInternal, "no tps in pgbench's output");
  return std::atof(out.c_str() + at + 6);
}

Status PrivatePostgres::CreateDatabase(const std::string& name) {
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return Error(Code::kInvalidField, "database names are letters, digits and _");
    }
  }
  try {
    pqxx::connection c(Url("postgres"));
    pqxx::nontransaction tx(c);
    if (tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", name).empty()) {
      tx.exec("CREATE DATABASE " + name);
    }
    return Status::Ok();
  } catch (const std::exception&) {
    return Error(Code::kUnavailable, "cannot create the database");
  }
}

Status PrivatePostgres::CrashAndRestart() {
  if (pid_ > 0) {
    // The whole server: the postmaster and its backends (they share its process group).
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    // Its backends die with it; the stale postmaster.pid left behind is recognised at start.
  }
  return Launch();
}

}  // namespace meridian::storage
