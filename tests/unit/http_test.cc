// The HTTP server and client over real loopback sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/random.h"
#include "crypto/crypto.h"
#include "net/http.h"

namespace meridian::net {
namespace {

using namespace std::chrono_literals;

class EchoHandler final : public Handler {
 public:
  size_t BodyLimit(std::string_view, std::string_view path) const override {
    return path == "/big" ? 4096 : 64;
  }
  void Handle(HttpRequest&& req, Respond respond) override {
    ++calls;
    if (req.path == "/slow") {
      std::thread([respond] {
        std::this_thread::sleep_for(300ms);
        respond(HttpResponse::Json(200, R"({"slow":true})"));
      }).detach();
      return;
    }
    if (req.path == "/tag") {
      return respond(HttpResponse::Json(
          200, std::string(req.Header("x-tag")) + "|" + req.query + "|" + req.target));
    }
    HttpResponse r = HttpResponse::Json(200, req.method + " " + req.path + " " + req.body);
    respond(std::move(r));
  }
  std::atomic<int> calls{0};
};

// A raw client: sends the pieces one by one (`gap` apart), returns whatever comes back until
// the peer closes or 3 s pass.
std::string RawExchange(uint16_t port, const std::vector<std::string>& pieces,
                        std::chrono::milliseconds gap, bool* closed = nullptr) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  for (const std::string& bytes : pieces) {
    EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    std::this_thread::sleep_for(gap);
  }
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + 3s;
  bool eof = false;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      eof = true;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (closed) *closed = eof;
  return out;
}
std::string RawExchange(uint16_t port, const std::string& bytes, bool* closed = nullptr) {
  return RawExchange(port, std::vector<std::string>{bytes}, 0ms, closed);
}

size_t Count(const std::string& haystack, std::string_view needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

class HttpTest : public ::testing::Test {
 protected:
  void Start(ServerOptions opts = {}) {
    opts.read_timeout = opts.read_timeout == 10'000ms ? 300ms : opts.read_timeout;
    opts.io_threads = 2;
    auto s = StartServer(opts, handler_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    auto c = MakeClient({});
    ASSERT_TRUE(c.ok());
    client_ = std::move(c).value();
  }
  Result<HttpResponse> Call(std::string method, std::string target, std::string body = {}) {
    ClientCall call;
    call.base_url = "http://127.0.0.1:" + std::to_string(server_->port());
    call.request.method = std::move(method);
    call.request.target = std::move(target);
    call.request.body = std::move(body);
    return client_->SendSync(std::move(call));
  }
  EchoHandler handler_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<HttpClient> client_;
};

TEST_F(HttpTest, ServesRequestsOverKeepAlive) {
  Start();
  for (int i = 0; i < 5; ++i) {
    auto r = Call("POST", "/echo?x=1", "hi");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "POST /echo hi");
  }
  EXPECT_EQ(handler_.calls.load(), 5);
}

// The wire form: framing decided by the server (a handler's own Content-Length, Connection
// or header with CR/LF is dropped), no Content-Length or body for 204, close when asked.
TEST(SerializeResponseTest, FramingIsTheServers) {
  HttpResponse r = HttpResponse::Json(409, R"({"error":"sold_out"})");
  r.headers.emplace_back("content-length", "999");
  r.headers.emplace_back("connection", "upgrade");
  r.headers.emplace_back("x-evil", "a\r\nset-cookie: x=1");
  r.headers.emplace_back("retry-after", "1");
  EXPECT_EQ(SerializeResponse(r, true),
            "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
            "server: meridian\r\ncontent-length: 20\r\n\r\n{\"error\":\"sold_out\"}");
  HttpResponse empty;
  empty.status = 204;
  empty.body = "dropped";
  EXPECT_EQ(SerializeResponse(empty, false),
            "HTTP/1.1 204 No Content\r\nserver: meridian\r\nconnection: close\r\n\r\n");
  // Into a session's reused buffer: the earlier answer is replaced, not appended to.
  std::string buffer = SerializeResponse(r, true) + "left over";
  SerializeResponse(empty, false, &buffer);
  EXPECT_EQ(buffer, SerializeResponse(empty, false));
}

// The server reads with its own loop over Beast's parser: requests that arrive together
// (pipelined), in pieces, chunked or after "100 Continue" each reach the handler whole.
TEST_F(HttpTest, PipelinedSplitChunkedAndContinuedRequestsArriveWhole) {
  Start();
  const std::string get = "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n";
  auto out =
      RawExchange(server_->port(),
                  get + get + "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
                      "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n2\r\nuv\r\n0\r\n\r\n");
  EXPECT_EQ(Count(out, "HTTP/1.1 200 OK"), 4u) << out;
  const size_t first = out.find("GET /echo ");
  const size_t third = out.find("POST /echo abc");
  const size_t fourth = out.find("POST /echo xyzuv");
  EXPECT_NE(first, std::string::npos) << out;
  EXPECT_LT(first, third);
  EXPECT_LT(third, fourth);
  EXPECT_NE(fourth, std::string::npos) << out;
  EXPECT_EQ(handler_.calls.load(), 4);

  // One byte at a time: names arrive in lowercase, the query and target as sent.
  const std::string tagged =
      "GET /tag?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Tag: Hello\r\nConnection: close\r\n\r\n";
  std::vector<std::string> bytes;
  for (char c : tagged) bytes.emplace_back(1, c);
  bool closed = false;
  out = RawExchange(server_->port(), bytes, 1ms, &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK", 0), 0u) << out;
  EXPECT_NE(out.find("Hello|a=1&b=2|/tag?a=1&b=2"), std::string::npos) << out;

  // A client that waits for "100 Continue" before its body.
  out = RawExchange(server_->port(),
                    {"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     "Content-Length: 4\r\nConnection: close\r\n\r\n",
                     "body"},
                    100ms);
  EXPECT_EQ(out.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK", 0), 0u) << out;
  EXPECT_NE(out.find("POST /echo body"), std::string::npos) << out;
  EXPECT_EQ(handler_.calls.load(), 6);
}

// Requests the server must refuse or must not misread, each with nothing reaching the handler:
// a body over the limit after a good request on the same connection, a Transfer-Encoding
// that is not chunked (its body's end is unknown), a chunk-size line that never ends; and a
// chunked body's trailer is no header of the request.
TEST_F(HttpTest, AmbiguousOrEndlessFramingIsRefusedAndTrailersAreNoHeaders) {
  Start();
  auto out = RawExchange(server_->port(),
                         "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"
                         "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" +
                             std::string(100, 'z'));
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK", 0), 0u) << out;
  EXPECT_NE(out.find("HTTP/1.1 413"), std::string::npos) << out;
  EXPECT_EQ(handler_.calls.load(), 1);

  out = RawExchange(server_->port(),
                    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
                    "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
  EXPECT_EQ(Count(out, "HTTP/1.1 "), 1u) << out;

  out = RawExchange(server_->port(),
                    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;" +
                        std::string(40'000, 'e'));
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out.substr(0, 80);
  EXPECT_EQ(handler_.calls.load(), 1);

  out = RawExchange(server_->port(),
                    "POST /tag HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                    "Connection: close\r\n\r\n2\r\nhi\r\n0\r\nX-Tag: trailer\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK", 0), 0u) << out;
  EXPECT_NE(out.find("\r\n\r\n||/tag"), std::string::npos) << out;  // no x-tag
  EXPECT_EQ(handler_.calls.load(), 2);
}

TEST_F(HttpTest, BodyOverTheLimitGets413AndNeverReachesTheHandler) {
  Start();
  auto r = Call("POST", "/small", std::string(65, 'x'));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(r->body.find("too_large"), std::string::npos);
  auto big = Call("POST", "/big", std::string(4000, 'x'));
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->status, 200);
  EXPECT_EQ(handler_.calls.load(), 1);
}

TEST_F(HttpTest, ChunkedBodyOverTheLimitGets413) {
  Start();
  std::string req =
      "POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "50\r\n" +
      std::string(80, 'y') + "\r\n0\r\n\r\n";
  auto out = RawExchange(server_->port(), req);
  EXPECT_EQ(out.rfind("HTTP/1.1 413", 0), 0u) << out;
  EXPECT_EQ(handler_.calls.load(), 0);
}

TEST_F(HttpTest, HeadersOverTheLimitGet431) {
  Start();
  std::string req = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(10'000, 'h') + "\r\n\r\n";
  auto out = RawExchange(server_->port(), req);
  EXPECT_EQ(out.rfind("HTTP/1.1 431", 0), 0u) << out.substr(0, 80);
  EXPECT_EQ(handler_.calls.load(), 0);
}

TEST_F(HttpTest, MalformedRequestGets400) {
  Start();
  auto out = RawExchange(server_->port(), "GARBAGE\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
}

TEST_F(HttpTest, StalledClientIsDisconnectedAfterTheReadTimeout) {
  Start();
  auto t0 = std::chrono::steady_clock::now();
  bool closed = false;
  auto out = RawExchange(
      server_->port(), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf", &closed);
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(closed);
  EXPECT_TRUE(out.empty()) << out;
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 2500ms);
  EXPECT_EQ(handler_.calls.load(), 0);
}

TEST_F(HttpTest, ShutdownFinishesInFlightRequests) {
  Start();
  std::atomic<int> status{0};
  ClientCall call;
  call.base_url = "http://127.0.0.1:" + std::to_string(server_->port());
  call.request.method = "GET";
  call.request.target = "/slow";
  client_->Send(call, [&](Result<HttpResponse> r) { status = r.ok() ? r->status : -1; });
  while (handler_.calls.load() == 0) std::this_thread::sleep_for(5ms);
  server_->Shutdown();
  server_->Wait();
  // The answer was written before Wait returned; the client's own thread reports it.
  for (int i = 0; i < 400 && status.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(status.load(), 200);
  auto after = Call("GET", "/echo");
  EXPECT_FALSE(after.ok());
}

TEST_F(HttpTest, ClientAddsTheEmulatedRoundTrip) {
  Start();
  ClientCall call;
  call.base_url = "http://127.0.0.1:" + std::to_string(server_->port());
  call.request.method = "GET";
  call.request.target = "/echo";
  call.added_latency = 150ms;
  auto t0 = std::chrono::steady_clock::now();
  auto r = client_->SendSync(call);
  ASSERT_TRUE(r.ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 150ms);
}

TEST_F(HttpTest, UnreachablePeerIsUnavailable) {
  auto c = MakeClient({});
  ASSERT_TRUE(c.ok());
  ClientCall call;
  call.base_url = "http://127.0.0.1:1";
  call.request.method = "GET";
  call.request.target = "/";
  auto r = (*c)->SendSync(call);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

TEST(HttpTlsTest, TlsWithTheClusterCa) {
  ASSERT_TRUE(crypto::Init().ok());
  auto dir =
      std::filesystem::temp_directory_path() / ("meridian-tls-" + SystemRandom::Instance().Hex(4));
  std::filesystem::create_directories(dir);
  auto ca = crypto::GenerateCa("test CA");
  auto node = crypto::IssueNodeCert(*ca, "oregon", "127.0.0.1");
  ASSERT_TRUE(ca.ok() && node.ok());
  std::ofstream(dir / "ca.pem") << ca->cert_pem;
  std::ofstream(dir / "node.pem") << node->cert_pem;
  std::ofstream(dir / "node.key") << node->key_pem;
  auto other_ca = crypto::GenerateCa("other CA");
  std::ofstream(dir / "other.pem") << other_ca->cert_pem;

  EchoHandler handler;
  ServerOptions opts;
  opts.tls = true;
  opts.cert_file = (dir / "node.pem").string();
  opts.key_file = (dir / "node.key").string();
  auto server = StartServer(opts, handler);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ClientCall call;
  call.base_url = "https://127.0.0.1:" + std::to_string((*server)->port());
  call.request.method = "GET";
  call.request.target = "/tls";

  auto good = MakeClient({(dir / "ca.pem").string()});
  auto r = (*good)->SendSync(call);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "GET /tls ");

  auto wrong = MakeClient({(dir / "other.pem").string()});
  EXPECT_FALSE((*wrong)->SendSync(call).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace meridian::net
