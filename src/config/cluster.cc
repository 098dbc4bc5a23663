#include "config/cluster.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "common/random.h"

namespace meridian::config {
namespace fs = std::filesystem;

const RegionConfig* ClusterConfig::Find(std::string_view name) const {
  for (const auto& r : regions) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

policy::RegionRoles ClusterConfig::Roles() const {
  policy::RegionRoles roles;
  for (const auto& r : regions) roles[r.name] = r.role;
  return roles;
}

int ClusterConfig::RttMs(std::string_view a, std::string_view b) const {
  if (a == b) return 0;
  for (auto [x, y] : {std::pair{a, b}, std::pair{b, a}}) {
    auto it = latency_ms.find(std::string(x));
    if (it == latency_ms.end()) continue;
    auto jt = it->second.find(std::string(y));
    if (jt != it->second.end()) return jt->second;
  }
  return 0;
}

std::vector<std::string> RegionConfig::Urls() const {
  std::vector<std::string> out;
  for (const auto& n : nodes) out.push_back(n.url);
  return out;
}

std::vector<const RegionConfig*> ClusterConfig::HomeRegions() const {
  std::vector<const RegionConfig*> out;
  for (const auto& r : regions) {
    if (r.role == policy::Role::kHome) out.push_back(&r);
  }
  return out;
}

std::string ReadFileOr(const std::string& path, std::string fallback) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fallback;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status WriteFileAtomic(const std::string& path, std::string_view data, int mode) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Error(Code::kInternal, fmt::format("cannot create {}", tmp));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) {
      ::close(fd);
      return Error(Code::kInternal, fmt::format("cannot write {}", tmp));
    }
    off += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Error(Code::kInternal, fmt::format("cannot rename into {}", path));
  }
  return Status::Ok();
}

Result<std::string> LoadAdminToken(const ClusterConfig& c) {
  std::string t = ReadFileOr(c.admin_token_file);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  if (t.size() < 16) {
    return Error(Code::kInternal,
                 fmt::format("admin token file {} is missing or too short", c.admin_token_file));
  }
  return t;
}

Status EnsureAdminToken(const ClusterConfig& c) {
  if (fs::exists(c.admin_token_file)) return Status::Ok();
  return WriteFileAtomic(c.admin_token_file, "mrd_admin_" + SystemRandom::Instance().Hex(32) + "\n",
                         0600);
}

namespace {
int LineOf(const toml::node* node, int fallback = 1) {
  if (node == nullptr || !node->source().begin) return fallback;
  return static_cast<int>(node->source().begin.line);
}

std::string Resolve(const std::string& dir, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(dir) / p).lexically_normal().string();
}
}  // namespace

Result<ClusterConfig> Load(const std::string& path, std::vector<policy::Diagnostic>* diags) {
  const size_t before = diags->size();
  auto add = [&](int line, std::string msg) { diags->push_back({path, line, std::move(msg)}); };
  std::string text = ReadFileOr(path, "\x01");
  if (text == "\x01") {
    add(0, "cannot read file");
    return Error(Code::kInvalidField, diags->back().ToString());
  }
  toml::table doc;
  try {
    doc = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    add(static_cast<int>(e.source().begin.line), std::string(e.description()));
    return Error(Code::kInvalidField, diags->back().ToString());
  }

  ClusterConfig c;
  c.path = fs::absolute(path).lexically_normal().string();
  c.dir = fs::path(c.path).parent_path().string();

  const toml::table* cluster = doc["cluster"].as_table();
  if (cluster == nullptr) {
    add(1, "'[cluster]' table is required");
  } else {
    c.policy_spec = (*cluster)["policy"].value_or(std::string("current"));
    if (!policy::BuiltinText(c.policy_spec)) c.policy_spec = Resolve(c.dir, c.policy_spec);
    c.tls = (*cluster)["tls"].value_or(true);
    c.ca_file = Resolve(c.dir, (*cluster)["ca_file"].value_or(std::string("ca.pem")));
    c.admin_token_file =
        Resolve(c.dir, (*cluster)["admin_token_file"].value_or(std::string("admin.token")));
    c.secrets_dir = Resolve(c.dir, (*cluster)["secrets_dir"].value_or(std::string("secrets")));
    c.keystore_secret_file = Resolve(
        c.dir, (*cluster)["keystore_secret_file"].value_or(std::string("secrets/keystore.secret")));
    std::string kdf = (*cluster)["keystore_kdf"].value_or(std::string("interactive"));
    if (kdf != "interactive" && kdf != "dev-fast") {
      add(LineOf(cluster->get("keystore_kdf")),
          "keystore_kdf must be \"interactive\" or \"dev-fast\"");
    }
    c.keystore_fast_kdf = kdf == "dev-fast";
  }

  if (const toml::table* node = doc["node"].as_table()) {
    auto& k = c.knobs;
    auto num = [&](const char* key, auto& field, int64_t lo, int64_t hi) {
      const toml::node* n = node->get(key);
      if (n == nullptr) return;
      auto v = n->value<int64_t>();
      if (!v || *v < lo || *v > hi) {
        add(LineOf(n), fmt::format("node.{} must be an integer in [{}, {}]", key, lo, hi));
        return;
      }
      field = static_cast<std::remove_reference_t<decltype(field)>>(*v);
    };
    num("io_threads", k.io_threads, 1, 64);
    num("workers", k.workers, 1, 256);
    num("internal_workers", k.internal_workers, 1, 256);
    num("max_body_bytes", k.max_body_bytes, 1024, 64 << 20);
    num("max_record_bytes", k.max_record_bytes, 1024, 64 << 20);
    num("max_header_bytes", k.max_header_bytes, 1024, 1 << 20);
    num("read_timeout_ms", k.read_timeout_ms, 10, 600'000);
    num("idle_timeout_ms", k.idle_timeout_ms, 10, 3'600'000);
    num("forward_timeout_ms", k.forward_timeout_ms, 10, 600'000);
    num("shutdown_grace_ms", k.shutdown_grace_ms, 0, 600'000);
    num("token_ttl_s", k.token_ttl_s, 1, 365LL * 24 * 3600);
    num("migration_parallel", k.migration_parallel, 1, 256);
    num("migration_users_per_s", k.migration_users_per_s, 0, 1'000'000);
    num("database_connections", k.database_connections, 1, 1000);
    num("lease_units", k.lease_units, 1, 1'000'000);
    num("lease_idle_ms", k.lease_idle_ms, 100, 3'600'000);
    num("lease_timeout_ms", k.lease_timeout_ms, 500, 600'000);
    num("data_key_cache_ms", k.data_key_cache_ms, 0, 86'400'000);
    num("data_key_cache_keys", k.data_key_cache_keys, 1000, 10'000'000);
    if (const toml::node* n = node->get("password_hashing")) {
      auto v = n->value<std::string>();
      if (v == "dev-fast") {
        k.dev_fast_password_hashing = true;
      } else if (v != "interactive") {
        add(LineOf(n), "node.password_hashing must be \"interactive\" or \"dev-fast\"");
      }
    }
    k.emulate_latency = (*node)["emulate_latency"].value_or(true);
  }

  if (const toml::array* regions = doc["regions"].as_array()) {
    for (const auto& item : *regions) {
      const toml::table* t = item.as_table();
      int line = LineOf(&item);
      if (t == nullptr) {
        add(line, "each [[regions]] entry must be a table");
        continue;
      }
      RegionConfig r;
      r.name = (*t)["name"].value_or(std::string());
      if (r.name.empty()) add(line, "region needs a 'name'");
      if (c.Find(r.name) != nullptr) add(line, fmt::format("region '{}' is listed twice", r.name));
      auto role = policy::ParseRole((*t)["role"].value_or(std::string()));
      if (!role) add(LineOf(t->get("role"), line), "region 'role' must be \"home\" or \"edge\"");
      r.role = role.value_or(policy::Role::kHome);
      // A node's address: "listen" (HOST:PORT) and "url", in the region's table or in each
      // entry of its "nodes" list.
      auto address = [&](const toml::table& n, int at) {
        NodeAddress a;
        std::string listen = n["listen"].value_or(std::string());
        auto colon = listen.rfind(':');
        int port = colon == std::string::npos ? -1 : std::atoi(listen.c_str() + colon + 1);
        if (colon == std::string::npos || port < 0 || port > 65535) {
          add(LineOf(n.get("listen"), at), "region 'listen' must be HOST:PORT");
        } else {
          a.listen_host = listen.substr(0, colon);
          a.listen_port = static_cast<uint16_t>(port);
        }
        a.url = n["url"].value_or(std::string());
        if (a.url.rfind("http://", 0) != 0 && a.url.rfind("https://", 0) != 0) {
          add(LineOf(n.get("url"), at), "region 'url' must start with http:// or https://");
        }
        for (const auto& other : r.nodes) {
          if (other.url == a.url) add(LineOf(n.get("url"), at), "a node 'url' is listed twice");
        }
        r.nodes.push_back(std::move(a));
      };
      if (const toml::array* nodes = (*t)["nodes"].as_array()) {
        if (t->contains("listen") || t->contains("url")) {
          add(LineOf(t->get("nodes"), line),
              "region has both 'nodes' and 'listen'/'url': list every node in 'nodes'");
        }
        for (const auto& n : *nodes) {
          if (const toml::table* nt = n.as_table()) {
            address(*nt, LineOf(&n, line));
          } else {
            add(LineOf(&n, line), "each entry of 'nodes' must be { listen = ..., url = ... }");
          }
        }
        if (r.nodes.empty() || r.nodes.size() > 16) {
          add(LineOf(t->get("nodes"), line), "region 'nodes' must list 1 to 16 nodes");
        }
      } else {
        address(*t, line);
      }
      if (!r.nodes.empty()) {
        r.listen_host = r.nodes[0].listen_host;
        r.listen_port = r.nodes[0].listen_port;
        r.url = r.nodes[0].url;
      }
      r.data_dir = Resolve(c.dir, (*t)["data_dir"].value_or(r.name));
      r.cert_file = Resolve(c.dir, (*t)["cert_file"].value_or("tls/" + r.name + ".pem"));
      r.key_file = Resolve(c.dir, (*t)["key_file"].value_or("tls/" + r.name + ".key"));
      r.keystore_file =
          Resolve(c.dir, (*t)["keystore"].value_or("secrets/" + r.name + ".keystore"));
      r.database_url = (*t)["database_url"].value_or(std::string());
      if (!r.database_url.empty() && r.database_url.rfind("postgresql://", 0) != 0 &&
          r.database_url.rfind("postgres://", 0) != 0) {
        add(LineOf(t->get("database_url"), line),
            "region 'database_url' must be a postgresql:// URL");
      }
      if (r.nodes.size() > 1 && r.database_url.empty()) {
        add(LineOf(t->get("nodes"), line),
            fmt::format("region '{}' has several nodes: they share one database, so it needs "
                        "a 'database_url' (RocksDB is one process's)",
                        r.name));
      }
      for (const auto& other : c.regions) {
        if (!r.database_url.empty() && other.database_url == r.database_url) {
          add(LineOf(t->get("database_url"), line),
              fmt::format("regions '{}' and '{}' share a database: each region's data stays "
                          "in its own",
                          other.name, r.name));
        }
      }
      c.regions.push_back(std::move(r));
    }
  }
  if (c.regions.empty()) add(1, "at least one [[regions]] entry is required");

  if (const toml::table* lat = doc["latency_ms"].as_table()) {
    for (const auto& [from, row] : *lat) {
      if (!c.Find(from.str())) {
        add(LineOf(&row), fmt::format("latency_ms names unknown region '{}'", from.str()));
      }
      const toml::table* rt = row.as_table();
      if (rt == nullptr) continue;
      for (const auto& [to, ms] : *rt) {
        auto v = ms.value<int64_t>();
        if (!c.Find(to.str()) || !v || *v < 0 || *v > 10'000) {
          add(LineOf(&ms), fmt::format("latency_ms.{}.{} must be 0..10000 ms to a known region",
                                       from.str(), to.str()));
          continue;
        }
        c.latency_ms[std::string(from.str())][std::string(to.str())] = static_cast<int>(*v);
      }
    }
  }

  if (diags->size() == before) {
    auto p = policy::Load(c.policy_spec, c.Roles(), diags);
    if (p.ok()) c.policy = std::move(p).value();
  }
  if (diags->size() > before) {
    std::vector<policy::Diagnostic> mine(diags->begin() + static_cast<long>(before), diags->end());
    return Error(Code::kInvalidField, policy::JoinDiagnostics(mine));
  }
  return c;
}

}  // namespace meridian::config
