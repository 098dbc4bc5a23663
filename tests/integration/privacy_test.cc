// Privacy by construction: sealed identifiers, encryption at rest, export, deletion and key
// rotation, then a search of every byte the cluster wrote for the planted personal data.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "common/encoding.h"
#include "common/random.h"
#include "config/cluster.h"
#include "crypto/crypto.h"
#include "crypto/hpke.h"
#include "integration/helpers.h"
#include "keys/keys.h"
#include "sdk/client.h"

namespace meridian::testing {
namespace {
using namespace std::chrono_literals;

std::unique_ptr<sdk::Client> Connect(TestCluster& c, const std::string& region, bool seal = true) {
  auto client = sdk::Client::Connect({c.Url(region), "", seal});
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

// Checks a signed document as an outside verifier would: the signature covers the document
// without "signature", compact with sorted keys, under the region's published key.
void ExpectValidSignature(TestCluster& c, Json doc, const std::string& region) {
  Json sig = doc["signature"];
  doc.erase("signature");
  auto regions = JsonOf(c.Call("california", "GET", "/v1/regions"));
  std::string verifier;
  for (const auto& r : regions["regions"]) {
    if (r["name"] == region) verifier = r["audit_verifier_key"];
  }
  ASSERT_FALSE(verifier.empty());
  EXPECT_EQ(sig["verifier_key"], verifier);
  auto pk = Base64Decode(sig["public_key"].get<std::string>());
  auto value = Base64Decode(sig["value"].get<std::string>());
  ASSERT_TRUE(pk && value);
  EXPECT_TRUE(crypto::VerifyEd25519(*pk, DumpJson(doc), *value));
  doc["tampered"] = true;
  EXPECT_FALSE(crypto::VerifyEd25519(*pk, DumpJson(doc), *value));
}

TEST(PrivacyTest, NothingPersonalIsReadableInAnyByteTheClusterWrote) {
  TestCluster c;
  c.Start();
  // 1. Plain registration through the edge (redirected), and sealed ones through the edge.
  TestUser asha{"IN",        "+91 98765 43210", "+919876543210",
                "singapore", "Asha Rao",        "asha.rao@example.in"};
  RegisterVia(c, "california", asha);
  auto ada = Connect(c, "california");
  ASSERT_TRUE(ada);
  auto ada_reg = ada->Register({{"country", "US"},
                                {"phone", "(650) 253-0000"},
                                {"password", "correct horse battery"},
                                {"name", "Ada Lovelace"},
                                {"email", "ada.lovelace@example.com"}});
  ASSERT_TRUE(ada_reg.ok()) << ada_reg.status().ToString();
  EXPECT_EQ((*ada_reg)["home_region"], "oregon");
  auto li = Connect(c, "california");
  ASSERT_TRUE(li);
  auto li_reg = li->Register({{"country", "CN"},
                              {"phone", "138 0013 8000"},
                              {"password", "correct horse battery"},
                              {"name", "Li Wei"},
                              {"email", "li.wei@example.cn"}});
  ASSERT_TRUE(li_reg.ok()) << li_reg.status().ToString();
  EXPECT_EQ((*li_reg)["home_region"], "beijing");

  // 2. Records and devices, plain and sealed.
  ASSERT_TRUE(c.Call("california", "PUT", "/v1/me/records/diary/day-one", "asha-diary-entry-7731",
                     Bearer(asha.token))
                  .status == 200);
  ASSERT_TRUE(ada->Put("notes", "engine", "ada-analytical-note-4410", "text/plain").ok());
  ASSERT_TRUE(li->Put("notes", "tea", "li-tea-notes-9021").ok());
  auto dev = c.Call("california", "POST", "/v1/me/devices",
                    R"({"imei":"490154203237518","model":"Mi 4"})", Bearer(asha.token));
  ASSERT_EQ(dev.status, 201) << dev.body;
  auto sealed_dev = ada->AddDevice("356938035643809", "Pixel");
  ASSERT_TRUE(sealed_dev.ok()) << sealed_dev.status().ToString();

  // 3. A sealed login through another region: forwarded unread to oregon by key id.
  auto ada2 = Connect(c, "beijing");
  ASSERT_TRUE(ada2);
  auto login = ada2->Login("+16502530000", "correct horse battery");
  ASSERT_TRUE(login.ok()) << login.status().ToString();
  EXPECT_EQ((*login)["user_id"], (*ada_reg)["user_id"]);
  EXPECT_EQ(*ada2->Get("notes", "engine"), "ada-analytical-note-4410");

  // 4. KEK rotation in singapore: reads keep working, before and after the rewrap.
  auto rot = c.Call("singapore", "POST", "/v1/admin/keys/rotate", "", Bearer(c.admin_token()));
  ASSERT_EQ(rot.status, 200) << rot.body;
  EXPECT_EQ(JsonOf(rot)["kek_version"], 2);
  EXPECT_EQ(c.Call("singapore", "GET", "/v1/me/records/diary/day-one", "", Bearer(asha.token)).body,
            "asha-diary-entry-7731");

  // 5. Export, signed and complete.
  auto exp = c.Call("california", "GET", "/v1/me/export", "", Bearer(asha.token));
  ASSERT_EQ(exp.status, 200) << exp.body;
  Json doc = JsonOf(exp);
  EXPECT_EQ(doc["profile"]["phone"], "+919876543210");
  EXPECT_EQ(doc["profile"]["email"], "asha.rao@example.in");
  EXPECT_EQ(doc["devices"][0]["imei"], "490154203237518");
  EXPECT_EQ(*Base64Decode(doc["records"][0]["body_base64"].get<std::string>()),
            "asha-diary-entry-7731");
  EXPECT_FALSE(doc["profile"].contains("password_hash"));
  ExpectValidSignature(c, doc, "singapore");

  // 6. Deletion: a signed receipt; afterwards token and password fail and the number is free.
  auto del = c.Call("california", "DELETE", "/v1/me", "", Bearer(li->token()));
  ASSERT_EQ(del.status, 200) << del.body;
  Json receipt = JsonOf(del)["receipt"];
  EXPECT_EQ(receipt["region"], "beijing");
  EXPECT_FALSE(receipt["data_key_id"].get<std::string>().empty());
  EXPECT_EQ(receipt["destroyed"]["records"], 1);
  ExpectValidSignature(c, receipt, "beijing");
  EXPECT_EQ(c.Call("beijing", "GET", "/v1/me", "", Bearer(li->token())).status, 401);
  EXPECT_FALSE(li->Login("+8613800138000", "correct horse battery").ok());
  auto li_again = Connect(c, "beijing");
  ASSERT_TRUE(li_again);
  EXPECT_TRUE(li_again
                  ->Register({{"country", "CN"},
                              {"phone", "+86 138 0013 8000"},
                              {"password", "another good password"}})
                  .ok());

  // 7. Every byte: files (WAL, tables, logs) and RocksDB contents of every region.
  std::this_thread::sleep_for(200ms);  // let the background rewrap finish its log line
  c.StopAll();
  const std::vector<std::string> planted = {"919876543210",
                                            "98765 43210",
                                            "9876543210",
                                            "asha.rao@example.in",
                                            "Asha Rao",
                                            "16502530000",
                                            "650-253-0000",
                                            "(650) 253-0000",
                                            "ada.lovelace@example.com",
                                            "Ada Lovelace",
                                            "8613800138000",
                                            "138 0013 8000",
                                            "li.wei@example.cn",
                                            "Li Wei",
                                            "490154203237518",
                                            "49015420323751",
                                            "356938035643809",
                                            "correct horse battery",
                                            "asha-diary-entry-7731",
                                            "ada-analytical-note-4410",
                                            "li-tea-notes-9021",
                                            "day-one",
                                            "diary"};
  for (const auto& region : TestCluster::Regions()) {
    for (const auto& needle : planted) {
      auto where = c.FindBytes(region, needle);
      EXPECT_TRUE(where.empty()) << "'" << needle << "' readable in " << region << ": "
                                 << where.front();
    }
  }
  // The rotation finished: singapore's node logged the rewrap and the old KEK's end.
  std::string log = config::ReadFileOr(c.dir() + "/singapore/node.log");
  EXPECT_NE(log.find("\"event\":\"rewrap_done\""), std::string::npos);
  EXPECT_NE(log.find("\"event\":\"kek_destroyed\""), std::string::npos);
}

TEST(PrivacyTest, CiphertextMovedBetweenUsersIsRefusedWithIntegrityError) {
  TestCluster c;
  c.Start();
  TestUser a{"SG", "8123 4567", "+6581234567", "singapore", "A", "a@example.sg"};
  TestUser b{"SG", "8123 4568", "+6581234568", "singapore", "B", "b@example.sg"};
  RegisterVia(c, "singapore", a);
  RegisterVia(c, "singapore", b);
  ASSERT_EQ(c.Call("singapore", "PUT", "/v1/me/records/n/k", "secret of a", Bearer(a.token)).status,
            200);
  ASSERT_EQ(c.Call("singapore", "PUT", "/v1/me/records/n/k", "secret of b", Bearer(b.token)).status,
            200);
  c.StopRegion("singapore", SIGTERM);
  {
    // An operator copies a's ciphertext over b's record.
    auto db = c.OpenStore("singapore");
    ASSERT_NE(db, nullptr);
    std::string a_key, a_val, b_key;
    ASSERT_TRUE(db->Scan(storage::Space::kContent, "", [&](std::string_view k, std::string_view v) {
                    if (k.starts_with(a.user_id)) {
                      a_key = k;
                      a_val = v;
                    }
                    if (k.starts_with(b.user_id)) b_key = k;
                    return true;
                  }).ok());
    ASSERT_FALSE(a_val.empty());
    ASSERT_FALSE(b_key.empty());
    storage::WriteBatch swap;
    swap.Put(storage::Space::kContent, b_key, a_val);
    ASSERT_TRUE(db->Write(swap).ok());
  }
  c.StartRegion("singapore");
  auto r = c.Call("singapore", "GET", "/v1/me/records/n/k", "", Bearer(b.token));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(ErrorCodeOf(r), "integrity_error");
  EXPECT_EQ(r.body.find("secret of a"), std::string::npos);
  EXPECT_EQ(c.Call("singapore", "GET", "/v1/me/records/n/k", "", Bearer(a.token)).body,
            "secret of a");
  c.StopRegion("singapore", SIGTERM);
  EXPECT_NE(config::ReadFileOr(c.dir() + "/singapore/node.log").find("integrity_error"),
            std::string::npos);
}

TEST(PrivacyTest, BadSealedMessagesAreRefused) {
  TestCluster c;
  c.Start();
  auto client = Connect(c, "california");
  ASSERT_TRUE(client);
  auto regions = JsonOf(c.Call("california", "GET", "/v1/regions"));
  std::string pk;
  uint8_t key_id = 0;
  for (const auto& r : regions["regions"]) {
    if (r["name"] == "singapore") {
      pk = *Base64UrlDecode(r["hpke_public_key"].get<std::string>());
      key_id = r["hpke_key_id"];
    }
    if (r["role"] == "edge") {
      EXPECT_TRUE(r["hpke_public_key"].is_null());
    }
  }
  ASSERT_EQ(pk.size(), 32u);
  Json reg = {
      {"country", "IN"}, {"phone", "+91 90000 77777"}, {"password", "correct horse battery"}};
  auto good = *crypto::hpke::SealMessage(key_id, pk, DumpJson(reg));
  auto post = [&](const std::string& sealed) {
    return c.Call("california", "POST", "/v1/accounts", DumpJson({{"sealed", sealed}}));
  };
  auto raw = *Base64UrlDecode(good);
  auto with = [&](std::string bytes) { return Base64UrlEncode(bytes); };
  // Unknown key id (no region owns it), unknown algorithm ids, truncated, tampered tag.
  std::string bad_key = raw;
  bad_key[0] = static_cast<char>(0xf0);
  EXPECT_EQ(ErrorCodeOf(post(with(bad_key))), "invalid_field");
  std::string bad_aead = raw;
  bad_aead[6] = 0x01;
  EXPECT_EQ(ErrorCodeOf(post(with(bad_aead))), "invalid_field");
  EXPECT_EQ(ErrorCodeOf(post(with(raw.substr(0, 30)))), "invalid_field");
  std::string bad_tag = raw;
  bad_tag.back() ^= 1;
  auto r = post(with(bad_tag));
  EXPECT_EQ(r.status, 400) << r.body;
  // The right key but the wrong info string.
  auto other = *crypto::hpke::Seal(pk, "not the meridian info", "", DumpJson(reg));
  EXPECT_EQ(ErrorCodeOf(post(with(raw.substr(0, 7) + other.enc + other.ct))), "invalid_field");
  // Over the size limit.
  EXPECT_EQ(post(std::string(70 * 1024, 'A')).status, 413);
  // Nothing of it was stored: the number registers afterwards.
  EXPECT_EQ(post(good).status, 201);

  // HPKE rotation: the new key id is published, and a message sealed to the previous one
  // still opens during the grace period.
  auto rot = c.Call("singapore", "POST", "/v1/admin/keys/rotate", R"({"hpke":true})",
                    Bearer(c.admin_token()));
  ASSERT_EQ(rot.status, 200) << rot.body;
  EXPECT_EQ(JsonOf(rot)["hpke_key_id"], key_id + 1);
  auto fresh = JsonOf(c.Call("singapore", "GET", "/v1/regions"));
  for (const auto& region : fresh["regions"]) {
    if (region["name"] == "singapore") {
      EXPECT_EQ(region["hpke_key_id"], key_id + 1);
    }
  }
  Json reg2 = {
      {"country", "IN"}, {"phone", "+91 90000 77778"}, {"password", "correct horse battery"}};
  EXPECT_EQ(post(*crypto::hpke::SealMessage(key_id, pk, DumpJson(reg2))).status, 201);
  EXPECT_EQ(c.Call("singapore", "POST", "/v1/admin/keys/rotate", R"({"hpke":"yes"})",
                   Bearer(c.admin_token()))
                .status,
            400);

  // A replayed sealed login within the window.
  auto sealed_login = client->SealFor(
      "singapore", {{"phone", "+919000077777"}, {"password", "correct horse battery"}});
  ASSERT_TRUE(sealed_login.ok());
  EXPECT_EQ(c.Call("california", "POST", "/v1/sessions", *sealed_login).status, 200);
  auto replay = c.Call("california", "POST", "/v1/sessions", *sealed_login);
  EXPECT_EQ(replay.status, 409) << replay.body;
  EXPECT_EQ(ErrorCodeOf(replay), "conflict");
}

TEST(PrivacyTest, WrongKeystoreSecretStopsTheNodeWithAClearMessage) {
  TestCluster c;
  std::string out = c.dir() + "/wrong-secret.log";
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDERR_FILENO);
    dup2(fd, STDOUT_FILENO);
    setenv("MERIDIAN_KEYSTORE_SECRET", "definitely not the secret", 1);
    execl(MERIDIAN_BIN, MERIDIAN_BIN, "node", "--config", (c.dir() + "/cluster.toml").c_str(),
          "--region", "oregon", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_NE(config::ReadFileOr(out).find("wrong secret"), std::string::npos)
      << config::ReadFileOr(out);
}

}  // namespace
}  // namespace meridian::testing

namespace meridian::testing {
namespace {

TEST(PrivacyTest, InternalEndpointsNeedARegionCertificateAndCredential) {
  TestCluster c({.tls = true});
  c.Start();
  std::vector<policy::Diagnostic> diags;
  auto cfg = config::Load(c.dir() + "/cluster.toml", &diags);
  ASSERT_TRUE(cfg.ok());
  auto ks = keys::OpenRegionKeystore(*cfg, "oregon", SystemRandom::Instance());
  ASSERT_TRUE(ks.ok()) << ks.status().ToString();
  const std::string target = "/internal/v1/keys";
  net::Headers creds = {{"x-meridian-internal", (*ks)->InternalToken()}};
  // The right credential without a client certificate: refused.
  auto no_cert = c.Call("singapore", "GET", target, "", creds);
  EXPECT_EQ(no_cert.status, 401) << no_cert.body;
  // With oregon's certificate from the cluster CA: served.
  auto client = net::MakeClient(
      {c.dir() + "/ca.pem", c.dir() + "/tls/oregon.pem", c.dir() + "/tls/oregon.key"});
  ASSERT_TRUE(client.ok());
  net::ClientCall call;
  call.base_url = c.Url("singapore");
  call.request.method = "GET";
  call.request.target = target;
  call.request.headers = creds;
  auto with_cert = (*client)->SendSync(call);
  ASSERT_TRUE(with_cert.ok()) << with_cert.status().ToString();
  EXPECT_EQ(with_cert->status, 200) << with_cert->body;
  // A certificate but the wrong credential: refused.
  call.request.headers = {{"x-meridian-internal", "not-it"}};
  EXPECT_EQ((*client)->SendSync(call)->status, 401);
  // Forwarding between regions works over mutual TLS.
  TestUser u{"IN", "+91 98765 55555", "+919876555555", "singapore", "M", "m@example.in"};
  RegisterVia(c, "california", u);
  EXPECT_EQ(c.Call("beijing", "GET", "/v1/me", "", Bearer(u.token)).status, 200);
}

}  // namespace
}  // namespace meridian::testing
