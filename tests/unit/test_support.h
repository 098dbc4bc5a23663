// Small helpers shared by the unit tests: a temporary folder and a store that forwards to a
// real one (tests override what they observe or pretend).
#pragma once

#include <filesystem>
#include <string>

#include "common/random.h"
#include "storage/store.h"

namespace meridian::testing {

// A fresh folder under the system's temp folder, removed with everything in it at the end
// (also when an assertion ends the test early).
class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("meridian-test-" + SystemRandom::Instance().Hex(6));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Every call goes to `inner`, a real store.
class ForwardingStore : public storage::Store {
 public:
  explicit ForwardingStore(storage::Store& inner) : inner_(inner) {}
  Result<std::optional<std::string>> Get(storage::Space s, std::string_view k) override {
    return inner_.Get(s, k);
  }
  Result<std::optional<std::string>> GetNow(storage::Space s, std::string_view k) override {
    return inner_.GetNow(s, k);
  }
  Status Write(const storage::WriteBatch& b) override { return inner_.Write(b); }
  Status WriteUnsynced(const storage::WriteBatch& b) override { return inner_.WriteUnsynced(b); }
  Status Sync() override { return inner_.Sync(); }
  Result<std::optional<std::string>> GetLatest(storage::Space s, std::string_view k) override {
    return inner_.GetLatest(s, k);
  }
  Status Scan(storage::Space s, std::string_view p, const storage::ScanFn& fn) override {
    return inner_.Scan(s, p, fn);
  }
  Status Purge(storage::Space s) override { return inner_.Purge(s); }
  bool Shared() const override { return inner_.Shared(); }

 private:
  storage::Store& inner_;
};

}  // namespace meridian::testing
