// A throwaway certificate authority and a server certificate it signed,
// generated in memory with OpenSSL for the HTTPS tests (nothing is read from
// or trusted on the machine). EC P-256 keys: fast to generate.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace hubcache::test {

struct TestPki {
  std::string ca_pem;    // trust anchor for the client
  std::string cert_pem;  // server certificate, signed by the CA
  std::string key_pem;   // server private key
};

namespace pki_detail {

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using CertPtr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

inline void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what);
}

inline KeyPtr make_key() {
  // EVP_EC_gen is a macro with a C cast; this is what it expands to.
  KeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", const_cast<char*>("P-256")));
  check(key != nullptr, "keygen");
  return key;
}

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, "extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// issuer == nullptr makes a self-signed certificate.
inline CertPtr make_cert(EVP_PKEY* key, const char* cn, long serial, X509* issuer) {
  CertPtr cert(X509_new());
  check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  return cert;
}

inline std::string to_pem(BIO* bio) {
  std::string out(BIO_ctrl_pending(bio), '\0');
  check(BIO_read(bio, out.data(), static_cast<int>(out.size())) == static_cast<int>(out.size()), "BIO_read");
  return out;
}

inline std::string cert_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  check(PEM_write_bio_X509(bio.get(), cert) == 1, "PEM_write_bio_X509");
  return to_pem(bio.get());
}

inline std::string key_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  check(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1, "PEM_write_bio_PrivateKey");
  return to_pem(bio.get());
}

}  // namespace pki_detail

// subject_alt_names in OpenSSL config syntax, e.g. "IP:127.0.0.1,DNS:localhost".
inline TestPki make_test_pki(const char* subject_alt_names) {
  using namespace pki_detail;
  const KeyPtr ca_key = make_key();
  const CertPtr ca = make_cert(ca_key.get(), "hubcache test CA", 1, nullptr);
  add_ext(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_ext(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(ca.get(), ca.get(), NID_subject_key_identifier, "hash");
  check(X509_sign(ca.get(), ca_key.get(), EVP_sha256()) > 0, "sign CA");

  const KeyPtr key = make_key();
  const CertPtr cert = make_cert(key.get(), "hubcache test server", 2, ca.get());
  add_ext(cert.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_ext(cert.get(), ca.get(), NID_ext_key_usage, "serverAuth");
  add_ext(cert.get(), ca.get(), NID_subject_alt_name, subject_alt_names);
  add_ext(cert.get(), ca.get(), NID_authority_key_identifier, "keyid");
  check(X509_sign(cert.get(), ca_key.get(), EVP_sha256()) > 0, "sign server");

  return TestPki{cert_pem(ca.get()), cert_pem(cert.get()), key_pem(key.get())};
}

}  // namespace hubcache::test
