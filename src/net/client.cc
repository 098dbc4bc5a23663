// The pooled HTTP/1.1 client: its own event loop thread, keep-alive connections per
// destination, optional TLS verified against the cluster CA, per-call deadline, and an
// emulated WAN delay applied with timers (never by blocking a thread).
#include <deque>
#include <map>
#include <thread>

#include "common/thread.h"
#include "net/beast.h"

namespace meridian::net {
namespace {
// The end of the message of a call that never reached its node (see NotDelivered).
constexpr std::string_view kNotConnected = "could not connect";

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
};

std::optional<Url> ParseUrl(std::string_view url) {
  Url u;
  if (url.rfind("https://", 0) == 0) {
    u.tls = true;
    url.remove_prefix(8);
  } else if (url.rfind("http://", 0) == 0) {
    url.remove_prefix(7);
  } else {
    return std::nullopt;
  }
  url = url.substr(0, url.find('/'));
  size_t colon = url.rfind(':');
  if (colon == std::string_view::npos) {
    u.host = std::string(url);
    u.port = u.tls ? "443" : "80";
  } else {
    u.host = std::string(url.substr(0, colon));
    u.port = std::string(url.substr(colon + 1));
  }
  if (u.host.empty()) return std::nullopt;
  return u;
}

struct Conn {
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point last_used;

  beast::tcp_stream& Lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

class Client;

struct Op : std::enable_shared_from_this<Op> {
  ClientCall call;
  std::function<void(Result<HttpResponse>)> done;
  Url url;
  std::unique_ptr<Conn> conn;
  bool reused = false;
  bool retried = false;
  http::request<http::string_body> req;
  std::optional<http::response_parser<http::string_body>> parser;
  std::optional<asio::steady_timer> timer;
  std::optional<tcp::resolver> resolver;
};

class Client final : public HttpClient {
 public:
  explicit Client(ClientOptions opts) : opts_(std::move(opts)), tls_(ssl::context::tls_client) {}

  ~Client() override {
    guard_.reset();
    ctx_.stop();
    if (thread_.joinable()) thread_.join();
  }

  Status Init() {
    tls_.set_options(ssl::context::default_workarounds | ssl::context::no_tlsv1 |
                     ssl::context::no_tlsv1_1);
    tls_.set_verify_mode(ssl::verify_peer);
    beast::error_code ec;
    if (!opts_.ca_file.empty()) {
      tls_.load_verify_file(opts_.ca_file, ec);
      if (ec) return Error(Code::kInternal, "cannot load the cluster CA file");
    }
    if (!opts_.cert_file.empty()) {
      tls_.use_certificate_chain_file(opts_.cert_file, ec);
      if (!ec) tls_.use_private_key_file(opts_.key_file, ssl::context::pem, ec);
      if (ec) return Error(Code::kInternal, "cannot load the client certificate");
    }
    thread_ = NamedThread("http-client", [this] { ctx_.run(); });
    return Status::Ok();
  }

  void Send(ClientCall call, std::function<void(Result<HttpResponse>)> done) override {
    auto op = std::make_shared<Op>();
    op->call = std::move(call);
    op->done = std::move(done);
    asio::post(ctx_, [this, op] { Begin(op); });
  }

 private:
  using Ms = std::chrono::milliseconds;

  void Begin(const std::shared_ptr<Op>& op) {
    auto url = ParseUrl(op->call.base_url);
    if (!url) return Finish(op, Error(Code::kInternal, "bad destination URL"));
    op->url = *url;
    BuildRequest(*op);
    Delay(op, op->call.added_latency / 2, [this, op] { Start(op); });
  }

  void Delay(const std::shared_ptr<Op>& op, Ms d, std::function<void()> next) {
    if (d.count() <= 0) return next();
    op->timer.emplace(ctx_, d);
    op->timer->async_wait([next = std::move(next)](beast::error_code) { next(); });
  }

  static void BuildRequest(Op& op) {
    const auto& r = op.call.request;
    op.req = {};
    op.req.method_string(r.method);
    op.req.target(r.target);
    op.req.version(11);
    for (const auto& [k, v] : r.headers) {
      if (k == "host" || k == "connection" || k == "content-length" || k == "transfer-encoding" ||
          k == "expect" || k == "keep-alive") {
        continue;
      }
      op.req.set(k, v);
    }
    op.req.set(http::field::host, op.url.host + ":" + op.url.port);
    op.req.keep_alive(true);
    op.req.body() = r.body;
    op.req.prepare_payload();
  }

  std::string PoolKey(const Url& u) const { return (u.tls ? "s:" : "p:") + u.host + ":" + u.port; }

  void Start(const std::shared_ptr<Op>& op) {
    auto& idle = pool_[PoolKey(op->url)];
    auto now = std::chrono::steady_clock::now();
    while (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      if (now - c->last_used < opts_.max_idle) {
        op->conn = std::move(c);
        op->reused = true;
        return WriteRequest(op);
      }
    }
    Connect(op);
  }

  void Connect(const std::shared_ptr<Op>& op) {
    op->reused = false;
    op->conn = std::make_unique<Conn>();
    if (op->url.tls) {
      op->conn->tls.emplace(ctx_, tls_);
    } else {
      op->conn->plain.emplace(ctx_);
    }
    op->resolver.emplace(ctx_);
    op->resolver->async_resolve(
        op->url.host, op->url.port,
        [this, op](beast::error_code ec, tcp::resolver::results_type results) {
          if (ec) return Fail(op, ec, true);
          auto& lowest = op->conn->Lowest();
          lowest.expires_after(op->call.timeout);
          lowest.async_connect(results, [this, op](beast::error_code cec, const tcp::endpoint&) {
            if (cec) return Fail(op, cec, true);
            beast::error_code nec;
            op->conn->Lowest().socket().set_option(tcp::no_delay(true), nec);
            if (!op->url.tls) return WriteRequest(op);
            auto& s = *op->conn->tls;
            s.set_verify_callback(ssl::host_name_verification(op->url.host));
            beast::error_code addr_ec;
            asio::ip::make_address(op->url.host, addr_ec);
            if (addr_ec) SSL_set_tlsext_host_name(s.native_handle(), op->url.host.c_str());
            s.async_handshake(ssl::stream_base::client, [this, op](beast::error_code hec) {
              if (hec) return Fail(op, hec, true);
              WriteRequest(op);
            });
          });
        });
  }

  template <typename Stream>
  void Exchange(const std::shared_ptr<Op>& op, Stream& stream) {
    http::async_write(stream, op->req, [this, op, &stream](beast::error_code ec, size_t) {
      if (ec) return Fail(op, ec);
      op->parser.emplace();
      op->parser->body_limit(opts_.max_response_bytes);
      http::async_read(stream, op->conn->buffer, *op->parser,
                       [this, op](beast::error_code rec, size_t) {
                         if (rec) return Fail(op, rec);
                         OnResponse(op);
                       });
    });
  }

  void WriteRequest(const std::shared_ptr<Op>& op) {
    op->conn->Lowest().expires_after(op->call.timeout);
    if (op->conn->tls) {
      Exchange(op, *op->conn->tls);
    } else {
      Exchange(op, *op->conn->plain);
    }
  }

  void OnResponse(const std::shared_ptr<Op>& op) {
    auto msg = op->parser->release();
    HttpResponse r;
    r.status = static_cast<int>(msg.result_int());
    r.headers = CopyHeaders(msg);
    r.body = std::move(msg.body());
    if (msg.keep_alive()) {
      op->conn->Lowest().expires_never();
      op->conn->last_used = std::chrono::steady_clock::now();
      pool_[PoolKey(op->url)].push_back(std::move(op->conn));
    }
    op->conn.reset();
    auto result = std::make_shared<HttpResponse>(std::move(r));
    Delay(op, op->call.added_latency - op->call.added_latency / 2,
          [this, op, result] { Finish(op, std::move(*result)); });
  }

  // `connecting`: the request never left (no connection): NotDelivered() says so.
  void Fail(const std::shared_ptr<Op>& op, beast::error_code ec, bool connecting = false) {
    op->conn.reset();
    // A pooled connection the peer closed while idle: try once more on a fresh one. (Over
    // TLS the close shows as a truncated stream.)
    if (op->reused && !op->retried &&
        (ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::eof ||
         ec == asio::ssl::error::stream_truncated)) {
      op->retried = true;
      return Connect(op);
    }
    std::string what = connecting ? std::string(kNotConnected)
                                  : (ec == beast::error::timeout ? "timed out" : "failed");
    Finish(op,
           Error(Code::kUnavailable, "call to " + op->url.host + ":" + op->url.port + " " + what));
  }

  void Finish(const std::shared_ptr<Op>& op, Result<HttpResponse> r) {
    auto done = std::move(op->done);
    op->timer.reset();
    done(std::move(r));
  }

  ClientOptions opts_;
  asio::io_context ctx_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_{asio::make_work_guard(ctx_)};
  ssl::context tls_;
  std::map<std::string, std::deque<std::unique_ptr<Conn>>> pool_;
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<HttpClient>> MakeClient(const ClientOptions& options) {
  auto c = std::make_unique<Client>(options);
  RETURN_IF_ERROR(c->Init());
  return std::unique_ptr<HttpClient>(std::move(c));
}

}  // namespace meridian::net
