// The dev CA: a P-256 CA and node certificates with an IP SAN, built with OpenSSL 3.
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "crypto/crypto.h"
#include "crypto/openssl_ptr.h"

namespace meridian::crypto {
namespace {
using CertPtr = OpenSslPtr<X509, X509_free>;
using BioPtr = OpenSslPtr<BIO, BIO_free>;

Status Fail(const char* what) { return Error(Code::kInternal, std::string("x509: ") + what); }

std::string BioString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<std::string> KeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)) {
    return Fail("cannot write key");
  }
  return BioString(bio.get());
}

Result<std::string> CertPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(bio.get(), cert)) return Fail("cannot write certificate");
  return BioString(bio.get());
}

bool AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key` named `cn`, valid ten years, with a random serial.
CertPtr NewCert(EVP_PKEY* key, std::string_view cn) {
  CertPtr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(std::string(cn).c_str()), -1,
                             -1, 0);
  return cert;
}

Result<KeyPtr> ParseKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return Fail("cannot read CA key");
  return key;
}

Result<CertPtr> ParseCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  CertPtr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return Fail("cannot read CA certificate");
  return cert;
}
}  // namespace

Result<KeyAndCert> GenerateCa(std::string_view common_name) {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return Fail("key generation failed");
  CertPtr cert = NewCert(key.get(), common_name);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  if (!AddExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE") ||
      !AddExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !AddExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash")) {
    return Fail("cannot add CA extensions");
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return Fail("cannot sign CA");
  ASSIGN_OR_RETURN(auto key_pem, KeyPem(key.get()));
  ASSIGN_OR_RETURN(auto cert_pem, CertPem(cert.get()));
  return KeyAndCert{std::move(key_pem), std::move(cert_pem)};
}

Result<KeyAndCert> IssueNodeCert(const KeyAndCert& ca, std::string_view common_name,
                                 std::string_view ip_address) {
  ASSIGN_OR_RETURN(auto ca_key, ParseKey(ca.key_pem));
  ASSIGN_OR_RETURN(auto ca_cert, ParseCert(ca.cert_pem));
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return Fail("key generation failed");
  CertPtr cert = NewCert(key.get(), common_name);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  std::string san =
      "IP:" + std::string(ip_address) + ",DNS:localhost,DNS:" + std::string(common_name);
  if (!AddExt(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExt(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature") ||
      !AddExt(cert.get(), ca_cert.get(), NID_ext_key_usage, "serverAuth,clientAuth") ||
      !AddExt(cert.get(), ca_cert.get(), NID_subject_alt_name, san.c_str())) {
    return Fail("cannot add node extensions");
  }
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) return Fail("cannot sign node");
  ASSIGN_OR_RETURN(auto key_pem, KeyPem(key.get()));
  ASSIGN_OR_RETURN(auto cert_pem, CertPem(cert.get()));
  return KeyAndCert{std::move(key_pem), std::move(cert_pem)};
}

}  // namespace meridian::crypto
