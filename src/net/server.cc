// The HTTP/1.1 server: one event loop per io thread, each with its own acceptor on the
// shared port (SO_REUSEPORT), keep-alive, a read deadline per request, header and body
// limits, optional TLS, and graceful shutdown.
#include <array>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include "common/log.h"
#include "common/thread.h"
#include "net/beast.h"

namespace meridian::net {
namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
// Sockets, acceptors and timers bound to their event loop's own executor type: handlers are
// dispatched without the type-erased executor's indirections.
using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;

struct Shared;

class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  explicit SessionBase(Shared& sh) : sh_(sh) {}
  virtual ~SessionBase();
  virtual void Drain() = 0;  // runs on the session's executor
  virtual asio::any_io_executor Executor() = 0;

 protected:
  Shared& sh_;
};

struct Shared {
  Shared(Handler& h, ServerOptions o) : handler(h), opts(std::move(o)) {}
  Handler& handler;
  ServerOptions opts;
  std::atomic<bool> draining{false};
  std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions;

  void Add(SessionBase* s, std::weak_ptr<SessionBase> w) {
    std::lock_guard lock(mu);
    sessions.emplace(s, std::move(w));
  }
  void Remove(SessionBase* s) {
    std::lock_guard lock(mu);
    sessions.erase(s);
    cv.notify_all();
  }
};

// The session leaves the server's set only here, after the derived parts (its socket, its
// timer) are gone: the last owner may be a handler's thread, and once the set is empty the
// server may destroy the event loops those parts belong to.
SessionBase::~SessionBase() { sh_.Remove(this); }

HttpResponse PlainError(Code code, std::string msg) {
  return HttpResponse::FromStatus(Status(code, std::move(msg)));
}

// CRTP over the stream type: PlainSession and TlsSession differ in handshake, close, and
// whether an answer can be written at once.
template <typename Derived>
class Session : public SessionBase {
 public:
  explicit Session(Shared& sh) : SessionBase(sh) {}

  void Register() { sh_.Add(this, weak_from_this()); }

  asio::any_io_executor Executor() override { return Self().Stream().get_executor(); }

  void Drain() override {
    if (reading_) CloseNow();
  }

  void CloseNow() {
    StopWatch();
    beast::error_code ec;
    Lowest().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().close(ec);
  }

 protected:
  Derived& Self() { return static_cast<Derived&>(*this); }
  auto& Lowest() { return beast::get_lowest_layer(Self().Stream()); }

  // One deadline per session, checked by one timer, instead of Beast's per-operation
  // timeouts: those armed and cancelled a timer for every read and every write (two timer
  // operations, their allocations and handler bookkeeping per request). The timer wakes
  // once per deadline period at most and closes the connection when the deadline passed.
  void SetDeadline(std::chrono::steady_clock::duration d) {
    deadline_ = std::chrono::steady_clock::now() + d;
    if (!watchdog_) watchdog_.emplace(Self().Stream().get_executor());
    if (!watching_ || deadline_ < watchdog_->expiry()) Watch();
  }
  void ClearDeadline() { deadline_ = std::chrono::steady_clock::time_point::max(); }
  void Watch() {
    watching_ = true;
    watchdog_->expires_at(deadline_);  // a wait pending is cancelled: its handler returns
    // Weak: a closed session goes at once, its timer with it.
    watchdog_->async_wait([weak = weak_from_this()](beast::error_code ec) {
      auto base = weak.lock();
      if (ec || !base) return;
      auto* self = static_cast<Derived*>(base.get());
      self->watching_ = false;
      if (std::chrono::steady_clock::now() >= self->deadline_) return self->CloseNow();
      if (self->deadline_ != std::chrono::steady_clock::time_point::max()) self->Watch();
    });
  }
  void StopWatch() {
    ClearDeadline();
    if (watchdog_) watchdog_->cancel();
    watching_ = false;
  }

  void DoRead() {
    if (sh_.draining) return CloseNow();
    // Not eager: put() stops after the header, so OnHeader sets the route's body limit before
    // any of the body is parsed (and before RequestParser reserves its length).
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(sh_.opts.max_header_bytes));
    parser_->body_limit(static_cast<uint64_t>(64) << 20);
    header_checked_ = false;
    reading_ = true;
    SetDeadline(sh_.opts.read_timeout);
    Parse();
  }

  static constexpr size_t kReadSize = 16 * 1024;

  // Feeds what is buffered to the parser and reads more while it needs more: Beast's own
  // read loop (http::async_read), without its composed operations and their handler layers.
  void Parse() {
    while (buffer_.size() > 0) {
      beast::error_code ec;
      const size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec && ec != http::error::need_more) return OnReadError(ec);
      if (!header_checked_ && parser_->is_header_done()) {
        header_checked_ = true;
        if (!OnHeader()) return;
      }
      if (parser_->is_done()) return OnRequest();
      if (ec || used == 0) break;  // the rest of an element is still to come
    }
    // What the parser holds back unparsed is bounded (Beast 1.74 puts no limit on a chunk's
    // size line or the trailer): past it the request is refused.
    if (buffer_.size() > sh_.opts.max_header_bytes + kReadSize) {
      return OnReadError(http::error::bad_chunk);
    }
    // Reads grow from 512 bytes as needed (Beast's rule): an idle connection keeps a small
    // buffer.
    Self().Stream().async_read_some(buffer_.prepare(beast::read_size(buffer_, kReadSize)),
                                    [self = Self().shared_from_this()](
                                        beast::error_code ec, size_t n) { self->OnRead(ec, n); });
  }

  // `n` bytes read into the buffer, or the read's error.
  void OnRead(beast::error_code ec, size_t n) {
    if (ec == asio::error::eof && parser_->got_some()) {
      parser_->put_eof(ec);  // a request cut short
      if (!ec) ec = http::error::partial_message;
    } else if (ec == asio::error::eof) {
      ec = http::error::end_of_stream;
    }
    if (ec) return OnReadError(ec);
    buffer_.commit(n);
    Parse();
  }

  // The header is in: the route's body limit, and "100 Continue" for a client waiting for it.
  // False when it answered the request itself.
  bool OnHeader() {
    const std::string_view path = parser_->Path();
    size_t limit = sh_.handler.BodyLimit(parser_->Method(), path);
    if (parser_->content_length() && *parser_->content_length() > limit) {
      Fail(PlainError(Code::kTooLarge, "request body is over the limit"));
      return false;
    }
    parser_->body_limit(limit);
    if (!parser_->is_done() && beast::iequals(parser_->Header("expect"), "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(Self().Stream(), asio::buffer(kContinue.data(), kContinue.size()),
                        [self = Self().shared_from_this()](beast::error_code ec, size_t) {
                          if (ec) return self->CloseNow();
                          self->Parse();
                        });
      return false;
    }
    return true;
  }

  void OnReadError(beast::error_code ec) {
    reading_ = false;
    if (ec == http::error::header_limit) {
      return Fail(PlainError(Code::kHeadersTooLarge, "request headers are over the limit"));
    }
    if (ec == http::error::body_limit) {
      return Fail(PlainError(Code::kTooLarge, "request body is over the limit"));
    }
    if (ec.category() == beast::error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      return Fail(PlainError(Code::kInvalidField, "malformed HTTP request"));
    }
    // Timeouts, resets and a peer that went away: just close.
    CloseNow();
  }

  void OnRequest() {
    reading_ = false;
    keep_alive_ = parser_->keep_alive();
    HttpRequest req = parser_->Release();
    req.peer_identity = peer_identity_;
    ClearDeadline();  // the handler may take its time; the write gets a deadline
    sh_.handler.Handle(std::move(req), [self = Self().shared_from_this()](HttpResponse r) {
      // An answer given on the event loop itself (sold out, say) is written at once; one
      // from another thread is handed to the loop.
      auto exec = self->Self().Stream().get_executor();
      asio::dispatch(exec, [self, r = std::move(r)]() mutable { self->Write(std::move(r), true); });
    });
  }

  // An error found while reading: answer it and close the connection.
  void Fail(HttpResponse r) {
    keep_alive_ = false;
    linger_ = true;
    Write(std::move(r), false);
  }

  // After answering an error before the body was read, keep reading (and discarding) for a
  // moment so the client's unsent body does not turn our close into a reset that destroys
  // the answer before the client reads it (a "lingering close").
  void LingerThenClose() {
    beast::error_code ec;
    Lowest().shutdown(tcp::socket::shutdown_send, ec);
    SetDeadline(std::chrono::seconds(2));
    drain_ = std::make_unique<std::array<char, 16 * 1024>>();
    DrainSome();
  }

  void DrainSome() {
    Lowest().async_read_some(asio::buffer(*drain_),
                             [self = Self().shared_from_this()](beast::error_code ec, size_t) {
                               if (ec) return self->CloseNow();
                               self->DrainSome();
                             });
  }

  void Write(HttpResponse r, bool allow_keep_alive) {
    keep_open_ = allow_keep_alive && keep_alive_ && !sh_.draining;
    SerializeResponse(r, keep_open_, &out_);
    // Most answers fit the socket's send buffer at once: no write operation, no completion
    // queued on the loop.
    const size_t sent = Self().WriteNow(out_);
    if (sent == out_.size()) return AfterWrite();
    SetDeadline(sh_.opts.read_timeout);
    asio::async_write(Self().Stream(), asio::buffer(out_.data() + sent, out_.size() - sent),
                      [self = Self().shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->CloseNow();
                        self->AfterWrite();
                      });
  }

  void AfterWrite() {
    if (!keep_open_) return linger_ ? LingerThenClose() : CloseNow();
    // The answer buffer is reused for the next answer; a large one (an export) is not kept
    // by an idle connection.
    if (out_.capacity() > kKeptAnswerBytes) std::string().swap(out_);
    // The next request is read from the loop, after the handlers already waiting there: an
    // answer given at once never nests on the stack (pipelined requests), and the read's
    // first try, made right after the answer, would rarely find the client's next request.
    asio::post(Self().Stream().get_executor(),
               [self = Self().shared_from_this()] { self->DoRead(); });
  }

  beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  bool header_checked_ = false;
  static constexpr size_t kKeptAnswerBytes = 16 * 1024;
  std::string out_;  // the answer being written
  bool keep_open_ = true;
  bool reading_ = false;
  bool keep_alive_ = true;
  bool linger_ = false;
  std::string peer_identity_;
  std::unique_ptr<std::array<char, 16 * 1024>> drain_;  // only while lingering
  std::optional<Timer> watchdog_;                       // on the session's executor
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  bool watching_ = false;  // a wait of the watchdog is pending
};

class PlainSession final : public Session<PlainSession> {
 public:
  PlainSession(Shared& sh, Socket&& socket) : Session(sh), stream_(std::move(socket)) {}
  Socket& Stream() { return stream_; }
  // Writes what the socket takes now, without waiting (it is non-blocking).
  size_t WriteNow(std::string_view bytes) {
    beast::error_code ec;
    size_t n = stream_.write_some(asio::buffer(bytes.data(), bytes.size()), ec);
    return ec ? 0 : n;
  }
  std::shared_ptr<PlainSession> shared_from_this() {
    return std::static_pointer_cast<PlainSession>(SessionBase::shared_from_this());
  }
  void Run() {
    Register();
    beast::error_code ec;
    stream_.non_blocking(true, ec);  // WriteNow must never block the loop
    if (ec) return CloseNow();
    DoRead();
  }

 private:
  Socket stream_;
};

class TlsSession final : public Session<TlsSession> {
 public:
  TlsSession(Shared& sh, Socket&& socket, ssl::context& ctx)
      : Session(sh), stream_(std::move(socket), ctx) {}
  beast::ssl_stream<Socket>& Stream() { return stream_; }
  size_t WriteNow(std::string_view) { return 0; }  // TLS records go through the async write
  std::shared_ptr<TlsSession> shared_from_this() {
    return std::static_pointer_cast<TlsSession>(SessionBase::shared_from_this());
  }
  void Run() {
    Register();
    reading_ = true;
    SetDeadline(sh_.opts.read_timeout);
    stream_.async_handshake(ssl::stream_base::server,
                            [self = shared_from_this()](beast::error_code ec) {
                              if (ec) return self->CloseNow();
                              self->ReadPeerIdentity();
                              self->DoRead();
                            });
  }
  // The verified client certificate's common name (OpenSSL verified the chain).
  void ReadPeerIdentity() {
    SSL* ssl = stream_.native_handle();
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (cert == nullptr) return;
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
      char cn[256] = {0};
      if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) >
          0) {
        peer_identity_ = cn;
      }
    }
    X509_free(cert);
  }

 private:
  beast::ssl_stream<Socket> stream_;
};

class Server final : public HttpServer {
 public:
  Server(Handler& handler, const ServerOptions& opts) : sh_(handler, opts) {}

  ~Server() override {
    Shutdown();
    Wait();
  }

  Status Start() {
    const auto& o = sh_.opts;
    if (o.tls) {
      tls_ = std::make_unique<ssl::context>(ssl::context::tls_server);
      tls_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      beast::error_code ec;
      tls_->use_certificate_chain_file(o.cert_file, ec);
      if (!ec) tls_->use_private_key_file(o.key_file, ssl::context::pem, ec);
      if (ec) return Error(Code::kInternal, "cannot load the node's TLS certificate or key");
      if (!o.client_ca_file.empty()) {
        tls_->load_verify_file(o.client_ca_file, ec);
        if (ec) return Error(Code::kInternal, "cannot load the client CA file");
        tls_->set_verify_mode(ssl::verify_peer);  // optional: no fail_if_no_peer_cert
        // With client certificates requested, OpenSSL fails the handshake of a client that
        // resumes a session (browsers and Node.js do on every new connection) unless the
        // sessions have a context.
        static constexpr unsigned char kSessionContext[] = "meridian";
        SSL_CTX_set_session_id_context(tls_->native_handle(), kSessionContext,
                                       sizeof(kSessionContext) - 1);
      }
    }
    beast::error_code ec;
    auto addr = asio::ip::make_address(o.host, ec);
    if (ec) return Error(Code::kInvalidField, "listen host is not an IP address");
    uint16_t port = o.port;
    for (int i = 0; i < std::max(1, o.io_threads); ++i) {
      auto& ctx = contexts_.emplace_back(std::make_unique<asio::io_context>(1));
      auto& acc = acceptors_.emplace_back(std::make_unique<Acceptor>(ctx->get_executor()));
      tcp::endpoint ep(addr, port);
      acc->open(ep.protocol(), ec);
      if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) acc->set_option(ReusePort(true), ec);
      if (!ec) acc->bind(ep, ec);
      if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        return Error(Code::kUnavailable, "cannot listen on " + o.host + ":" + std::to_string(port) +
                                             ": " + ec.message());
      }
      port = acc->local_endpoint().port();
    }
    port_ = port;
    for (size_t i = 0; i < contexts_.size(); ++i) {
      Accept(i);
      guards_.emplace_back(asio::make_work_guard(*contexts_[i]));
      threads_.push_back(
          NamedThread("http-" + std::to_string(i), [ctx = contexts_[i].get()] { ctx->run(); }));
    }
    return Status::Ok();
  }

  uint16_t port() const override { return port_; }

  void Shutdown() override {
    if (sh_.draining.exchange(true)) return;
    for (size_t i = 0; i < acceptors_.size(); ++i) {
      asio::post(*contexts_[i], [acc = acceptors_[i].get()] {
        beast::error_code ec;
        acc->close(ec);
      });
    }
    std::vector<std::shared_ptr<SessionBase>> live;
    {
      std::lock_guard lock(sh_.mu);
      for (auto& [raw, weak] : sh_.sessions) {
        if (auto s = weak.lock()) live.push_back(std::move(s));
      }
    }
    for (auto& s : live) {
      asio::post(s->Executor(), [s] { s->Drain(); });
    }
    live.clear();
    {
      std::unique_lock lock(sh_.mu);
      sh_.cv.wait_for(lock, sh_.opts.shutdown_grace, [&] { return sh_.sessions.empty(); });
    }
    guards_.clear();
    for (auto& ctx : contexts_) ctx->stop();
  }

  void Wait() override {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void Accept(size_t i) {
    acceptors_[i]->async_accept([this, i](beast::error_code ec, Socket s) {
      if (ec) {
        if (ec == asio::error::operation_aborted || sh_.draining) return;
        log::Warn("accept_failed", {{"error", ec.message()}});
      } else {
        s.set_option(tcp::no_delay(true), ec);
        if (tls_) {
          std::make_shared<TlsSession>(sh_, std::move(s), *tls_)->Run();
        } else {
          std::make_shared<PlainSession>(sh_, std::move(s))->Run();
        }
      }
      if (!sh_.draining) Accept(i);
    });
  }

  Shared sh_;
  std::unique_ptr<ssl::context> tls_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
};

}  // namespace

Result<std::unique_ptr<HttpServer>> StartServer(const ServerOptions& options, Handler& handler) {
  auto s = std::make_unique<Server>(handler, options);
  RETURN_IF_ERROR(s->Start());
  return std::unique_ptr<HttpServer>(std::move(s));
}

Result<int> FreeLoopbackPorts(int count) {
  // Binding (with SO_REUSEADDR, as the server does) is the only reliable test of a port.
  auto bindable = [](int port) {
    asio::io_context io;
    tcp::acceptor a(io);
    boost::system::error_code ec;
    a.open(tcp::v4(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a.bind({asio::ip::make_address_v4("127.0.0.1"), static_cast<uint16_t>(port)}, ec);
    return !ec;
  };
  std::random_device rd;
  std::uniform_int_distribution<int> dist(20000, 32767 - count);
  for (int attempt = 0; attempt < 200; ++attempt) {
    int base = dist(rd);
    bool all = true;
    for (int i = 0; i < count && all; ++i) all = bindable(base + i);
    if (all) return base;
  }
  return Error(Code::kUnavailable, "no free consecutive loopback ports");
}

}  // namespace meridian::net
