#include "bench/loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>

#include <unistd.h>
#include <thread>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <vector>

namespace meridian::bench {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
constexpr uint32_t kTimerTag = std::numeric_limits<uint32_t>::max();
constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr int64_t kRetryAfterErrorNs = 20'000'000;
constexpr int64_t kHousekeepingNs = 50'000'000;

double ThreadCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] + 32) : a[i];
    if (x != b[i]) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// One parsed answer at the front of a buffer.
struct Parsed {
  enum Kind { kIncomplete, kComplete, kMalformed } kind = kIncomplete;
  size_t consumed = 0;
  int status = 0;
  std::string_view body;
  bool close = false;  // the server will close the connection after it
};

Parsed ParseHttp(std::string_view s) {
  Parsed p;
  size_t hdr_end = s.find("\r\n\r\n");
  if (hdr_end == std::string_view::npos) {
    if (s.size() > kMaxHeaderBytes) p.kind = Parsed::kMalformed;
    return p;
  }
  std::string_view head = s.substr(0, hdr_end);
  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/") {
    p.kind = Parsed::kMalformed;
    return p;
  }
  int status = 0;
  auto [ptr, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
  if (ec != std::errc() || status < 100) {
    p.kind = Parsed::kMalformed;
    return p;
  }
  p.close = status_line.substr(5, 3) == "1.0";
  bool has_length = false;
  size_t length = 0;
  size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(pos, end - pos);
    pos = end + 2;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    std::string_view value = Trim(line.substr(colon + 1));
    if (IEquals(name, "content-length")) {
      auto r = std::from_chars(value.data(), value.data() + value.size(), length);
      if (r.ec != std::errc()) {
        p.kind = Parsed::kMalformed;
        return p;
      }
      has_length = true;
    } else if (IEquals(name, "connection")) {
      if (IEquals(value, "close")) p.close = true;
      if (IEquals(value, "keep-alive")) p.close = false;
    } else if (IEquals(name, "transfer-encoding")) {
      // Every server measured here sends Content-Length; chunked bodies are not needed.
      p.kind = Parsed::kMalformed;
      return p;
    }
  }
  if (!has_length && status != 204 && status != 304 && status >= 200) {
    p.kind = Parsed::kMalformed;
    return p;
  }
  size_t total = hdr_end + 4 + length;
  if (s.size() < total) return p;
  p.kind = Parsed::kComplete;
  p.consumed = total;
  p.status = status;
  p.body = s.substr(hdr_end + 4, length);
  return p;
}

Parsed ParseResp(std::string_view s) {
  Parsed p;
  if (s.empty()) return p;
  size_t line_end = s.find("\r\n");
  if (line_end == std::string_view::npos) {
    if (s.size() > kMaxHeaderBytes) p.kind = Parsed::kMalformed;
    return p;
  }
  std::string_view line = s.substr(1, line_end - 1);
  size_t after = line_end + 2;
  auto number = [&](int64_t& n) {
    auto r = std::from_chars(line.data(), line.data() + line.size(), n);
    return r.ec == std::errc();
  };
  switch (s[0]) {
    case '+':
    case ':':
    case '-':
      p.kind = Parsed::kComplete;
      p.status = s[0] == '-' ? 500 : 200;
      p.body = line;
      p.consumed = after;
      return p;
    case '$': {
      int64_t n = 0;
      if (!number(n)) break;
      if (n < 0) {
        p.kind = Parsed::kComplete;
        p.status = 200;
        p.consumed = after;
        return p;
      }
      if (s.size() < after + static_cast<size_t>(n) + 2) return p;
      p.kind = Parsed::kComplete;
      p.status = 200;
      p.body = s.substr(after, static_cast<size_t>(n));
      p.consumed = after + static_cast<size_t>(n) + 2;
      return p;
    }
    case '*': {
      int64_t n = 0;
      if (!number(n)) break;
      size_t pos = after;
      for (int64_t k = 0; k < n; ++k) {
        Parsed e = ParseResp(s.substr(pos));
        if (e.kind != Parsed::kComplete) return e;
        pos += e.consumed;
      }
      p.kind = Parsed::kComplete;
      p.status = 200;
      p.body = s.substr(after, pos - after);
      p.consumed = pos;
      return p;
    }
    default:
      break;
  }
  p.kind = Parsed::kMalformed;
  return p;
}

constexpr size_t kNoRequest = std::numeric_limits<size_t>::max();

struct Conn {
  enum State { kDown, kConnecting, kIdle, kBusy } state = kDown;
  int fd = -1;
  std::string out;
  size_t out_off = 0;
  std::string in;
  size_t in_off = 0;
  size_t request = kNoRequest;
  int64_t scheduled_ns = 0;
  int64_t sent_ns = 0;
  int64_t retry_at_ns = 0;
};

class Generator {
 public:
  Generator(const LoadOptions& o, const RequestFn& make, const ReplyFn& on_reply)
      : o_(o), make_(make), on_reply_(on_reply), conns_(static_cast<size_t>(o.connections)) {}

  ~Generator() {
    for (auto& c : conns_) CloseFd(c);
    if (timer_fd_ >= 0) ::close(timer_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
  }

  Result<LoadSummary> Run() {
    if (o_.connections < 1) return Error(Code::kInvalidField, "connections must be at least 1");
    std::string host = o_.host == "localhost" ? "127.0.0.1" : o_.host;
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(o_.port);
    if (inet_pton(AF_INET, host.c_str(), &addr_.sin_addr) != 1) {
      return Error(Code::kInvalidField, "the load generator needs a numeric IPv4 host");
    }
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epoll_fd_ < 0 || timer_fd_ < 0) return Error(Code::kInternal, "epoll or timerfd failed");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = kTimerTag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev);

    // Every connection is open before the schedule starts: connecting is set-up.
    start_ns_ = MonotonicNs();
    for (size_t i = 0; i < conns_.size(); ++i) Open(i);
    const int64_t connect_deadline = MonotonicNs() + 5'000'000'000;
    while (MonotonicNs() < connect_deadline && CountIn(Conn::kConnecting) > 0) Poll(10);
    if (idle_.empty()) {
      return Error(Code::kUnavailable, "cannot connect to " + host + ":" + std::to_string(o_.port));
    }
    start_ns_ = MonotonicNs();
    const double cpu_start = ThreadCpuSeconds();
    summary_.requests = o_.requests;
    const int64_t last_sched = o_.rate > 0 && o_.requests > 0 ? Scheduled(o_.requests - 1) : 0;
    summary_.last_scheduled_ns = last_sched;
    deadline_ns_ = o_.rate > 0 ? last_sched + o_.drain.count() * 1'000'000 : kNever;
    int64_t next_housekeeping = 0;

    while (completed_ < o_.requests) {
      const int64_t now = Now();
      while (next_ < o_.requests && !idle_.empty() && (o_.rate <= 0 || Scheduled(next_) <= now)) {
        size_t ci = idle_.back();
        idle_.pop_back();
        Send(ci, next_, o_.rate > 0 ? Scheduled(next_) : now);
        ++next_;
      }
      if (now >= deadline_ns_) break;
      if (now >= next_housekeeping) {
        Housekeeping(now);
        next_housekeeping = now + kHousekeepingNs;
      }
      int64_t wake = std::min(deadline_ns_, next_housekeeping);
      if (o_.rate > 0 && next_ < o_.requests && !idle_.empty()) {
        wake = std::min(wake, Scheduled(next_));
      }
      ArmTimer(wake);
      Poll(-1);
    }
    // The run is over: whatever is still out or unsent has no answer.
    for (size_t ci = 0; ci < conns_.size(); ++ci) {
      if (conns_[ci].state == Conn::kBusy) FailRequest(ci);
    }
    for (; next_ < o_.requests; ++next_) {
      Deliver(next_, 0, {}, o_.rate > 0 ? Scheduled(next_) : Now());
    }
    summary_.generator_cpu_s = ThreadCpuSeconds() - cpu_start;
    summary_.offered_rate =
        o_.rate > 0 && last_sched > 0 ? static_cast<double>(o_.requests - 1) * 1e9 / last_sched : 0;
    summary_.achieved_rate = summary_.last_done_ns > 0
                                 ? static_cast<double>(summary_.answered) * 1e9 /
                                       static_cast<double>(summary_.last_done_ns)
                                 : 0;
    return summary_;
  }

 private:
  int64_t Now() const { return MonotonicNs() - start_ns_; }
  int64_t Scheduled(size_t i) const {
    return static_cast<int64_t>(static_cast<double>(i) * 1e9 / o_.rate);
  }
  size_t CountIn(Conn::State s) const {
    return static_cast<size_t>(
        std::count_if(conns_.begin(), conns_.end(), [s](const Conn& c) { return c.state == s; }));
  }

  void ArmTimer(int64_t at_ns) {
    if (at_ns == armed_ns_) return;
    armed_ns_ = at_ns;
    itimerspec spec{};
    if (at_ns != kNever) {
      int64_t abs = start_ns_ + std::max<int64_t>(at_ns, 1);
      spec.it_value.tv_sec = abs / 1'000'000'000;
      spec.it_value.tv_nsec = abs % 1'000'000'000;
    }
    timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  void Open(size_t ci) {
    Conn& c = conns_[ci];
    CloseFd(c);
    c.in.clear();
    c.in_off = 0;
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      c.state = Conn::kDown;
      c.retry_at_ns = Now() + kRetryAfterErrorNs;
      return;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in to = addr_;
    if (!o_.more_ports.empty()) {
      const size_t k = ci % (o_.more_ports.size() + 1);
      to.sin_port = htons(k == 0 ? o_.port : o_.more_ports[k - 1]);
    }
    int r = ::connect(c.fd, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    epoll_event ev{};
    ev.data.u32 = static_cast<uint32_t>(ci);
    if (r == 0) {
      ev.events = EPOLLIN;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev);
      c.state = Conn::kIdle;
      idle_.push_back(ci);
    } else if (errno == EINPROGRESS) {
      ev.events = EPOLLIN | EPOLLOUT;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev);
      c.state = Conn::kConnecting;
    } else {
      CloseFd(c);
      c.state = Conn::kDown;
      c.retry_at_ns = Now() + kRetryAfterErrorNs;
    }
  }

  void CloseFd(Conn& c) {
    if (c.fd >= 0) {
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
      ::close(c.fd);
      c.fd = -1;
    }
  }

  // The connection is unusable: its request fails, and it is reopened (at once after an
  // orderly close, a little later after an error so a dead server is not spun on).
  void Drop(size_t ci, bool error) {
    Conn& c = conns_[ci];
    if (c.state == Conn::kBusy) FailRequest(ci);
    if (c.state == Conn::kIdle) std::erase(idle_, ci);
    CloseFd(c);
    c.state = Conn::kDown;
    c.retry_at_ns = Now() + (error ? kRetryAfterErrorNs : 0);
    ++summary_.reconnects;
    if (!error) Open(ci);
  }

  void FailRequest(size_t ci) {
    Conn& c = conns_[ci];
    size_t req = c.request;
    int64_t sched = c.scheduled_ns;
    c.request = kNoRequest;
    c.state = Conn::kDown;
    Deliver(req, 0, {}, sched);
  }

  void Deliver(size_t req, int status, std::string_view body, int64_t sched) {
    Reply r;
    r.status = status;
    r.body = body;
    r.scheduled_ns = sched;
    r.done_ns = Now();
    if (status != 0) {
      last_progress_ns_ = r.done_ns;
      ++summary_.answered;
      summary_.last_done_ns = std::max(summary_.last_done_ns, r.done_ns);
    } else {
      ++summary_.failed;
    }
    ++completed_;
    on_reply_(req, r);
  }

  void Send(size_t ci, size_t req, int64_t sched) {
    Conn& c = conns_[ci];
    c.out.clear();
    c.out_off = 0;
    make_(req, c.out);
    c.request = req;
    c.scheduled_ns = sched;
    c.sent_ns = Now();
    c.state = Conn::kBusy;
    Flush(ci);
  }

  void Flush(size_t ci) {
    Conn& c = conns_[ci];
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.u32 = static_cast<uint32_t>(ci);
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
        return;
      }
      return Drop(ci, true);
    }
  }

  void Housekeeping(int64_t now) {
    const int64_t timeout = o_.timeout.count() * 1'000'000;
    for (size_t ci = 0; ci < conns_.size(); ++ci) {
      Conn& c = conns_[ci];
      if (c.state == Conn::kBusy && now - c.sent_ns > timeout) Drop(ci, true);
      if (c.state == Conn::kDown && now >= c.retry_at_ns) Open(ci);
    }
    // A closed loop has no schedule to end it: it ends when nothing has been answered for a
    // whole timeout (the server is gone).
    if (o_.rate <= 0 && now - last_progress_ns_ > timeout) deadline_ns_ = now;
  }

  void Poll(int timeout_ms) {
    epoll_event events[256];
    int n = epoll_wait(epoll_fd_, events, 256, timeout_ms);
    for (int k = 0; k < n; ++k) {
      uint32_t tag = events[k].data.u32;
      if (tag == kTimerTag) {
        uint64_t expirations = 0;
        ssize_t ignored = ::read(timer_fd_, &expirations, sizeof expirations);
        (void)ignored;
        armed_ns_ = -1;
        continue;
      }
      OnEvent(tag, events[k].events);
    }
  }

  void OnEvent(size_t ci, uint32_t events) {
    Conn& c = conns_[ci];
    if (c.fd < 0) return;
    if (c.state == Conn::kConnecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) return Drop(ci, true);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<uint32_t>(ci);
      epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
      c.state = Conn::kIdle;
      idle_.push_back(ci);
      return;
    }
    if ((events & EPOLLOUT) != 0 && c.state == Conn::kBusy) {
      Flush(ci);
      if (c.fd < 0) return;
      if (c.out_off == c.out.size()) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = static_cast<uint32_t>(ci);
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
      }
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) Read(ci);
  }

  void Read(size_t ci) {
    Conn& c = conns_[ci];
    for (;;) {
      size_t old = c.in.size();
      c.in.resize(old + 16384);
      ssize_t n = ::recv(c.fd, c.in.data() + old, 16384, 0);
      c.in.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
      if (n > 0) {
        if (static_cast<size_t>(n) < 16384) break;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      // EOF or error: an answer already complete in the buffer still counts.
      Consume(ci);
      if (c.fd >= 0) Drop(ci, n < 0);
      return;
    }
    Consume(ci);
  }

  void Consume(size_t ci) {
    Conn& c = conns_[ci];
    while (c.fd >= 0 && c.in_off < c.in.size()) {
      std::string_view rest(c.in.data() + c.in_off, c.in.size() - c.in_off);
      Parsed p = o_.protocol == Protocol::kHttp ? ParseHttp(rest) : ParseResp(rest);
      if (p.kind == Parsed::kIncomplete) break;
      if (p.kind == Parsed::kMalformed || c.state != Conn::kBusy) return Drop(ci, true);
      size_t req = c.request;
      int64_t sched = c.scheduled_ns;
      c.request = kNoRequest;
      c.state = Conn::kIdle;
      Deliver(req, p.status, p.body, sched);
      c.in_off += p.consumed;
      if (p.close) return Drop(ci, false);
      idle_.push_back(ci);
    }
    if (c.in_off == c.in.size()) {
      c.in.clear();
      c.in_off = 0;
    }
  }

  const LoadOptions& o_;
  const RequestFn& make_;
  const ReplyFn& on_reply_;
  std::vector<Conn> conns_;
  std::vector<size_t> idle_;
  sockaddr_in addr_{};
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  int64_t armed_ns_ = -1;
  int64_t start_ns_ = 0;
  int64_t deadline_ns_ = kNever;
  int64_t last_progress_ns_ = 0;
  size_t next_ = 0;
  size_t completed_ = 0;
  LoadSummary summary_;
};

}  // namespace

Result<HttpEndpoint> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return Error(Code::kInvalidField, "the load generator needs an http:// URL (no TLS)");
  }
  url.remove_prefix(kScheme.size());
  HttpEndpoint e;
  size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (slash != std::string_view::npos) e.path = std::string(url.substr(slash));
  size_t colon = authority.rfind(':');
  e.host = std::string(authority.substr(0, colon));
  if (colon != std::string_view::npos) {
    std::string_view port = authority.substr(colon + 1);
    auto r = std::from_chars(port.data(), port.data() + port.size(), e.port);
    if (r.ec != std::errc() || r.ptr != port.data() + port.size() || e.port == 0) {
      return Error(Code::kInvalidField, "bad port in URL");
    }
  }
  if (e.host.empty()) return Error(Code::kInvalidField, "no host in URL");
  e.base_url = "http://" + e.host + ":" + std::to_string(e.port);
  return e;
}

Result<LoadSummary> RunLoad(const LoadOptions& options, const RequestFn& make,
                            const ReplyFn& on_reply) {
  Generator g(options, make, on_reply);
  return g.Run();
}

void AppendRequest(std::string& out, const HttpEndpoint& ep, std::string_view method,
                   std::string_view target, std::string_view token, std::string_view body,
                   std::string_view content_type, std::string_view extra_headers) {
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: ");
  out.append(ep.host).append(":").append(std::to_string(ep.port)).append("\r\n");
  if (!token.empty()) out.append("Authorization: Bearer ").append(token).append("\r\n");
  out.append(extra_headers);
  if (!body.empty()) out.append("Content-Type: ").append(content_type).append("\r\n");
  out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  out.append(body);
}

Result<LoadSummary> RunClosed(const HttpEndpoint& ep, int connections, size_t n,
                              const RequestFn& make, const ReplyFn& on_reply,
                              std::chrono::milliseconds drain) {
  LoadOptions lo;
  lo.host = ep.host;
  lo.port = ep.port;
  lo.more_ports = ep.more_ports;
  lo.connections = connections;
  lo.rate = 0;
  lo.requests = n;
  lo.drain = drain;
  return RunLoad(lo, make, on_reply);
}

Status RegisterAccounts(const HttpEndpoint& ep, int connections, size_t n,
                        const std::function<std::string(size_t)>& body_of,
                        const std::function<bool(size_t, std::string_view)>& created) {
  std::vector<size_t> todo(n);
  for (size_t i = 0; i < n; ++i) todo[i] = i;
  std::string last_error;
  for (int pass = 0; pass < 5 && !todo.empty(); ++pass) {
    if (pass > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::vector<size_t> failed;
    auto make = [&](size_t k, std::string& out) {
      AppendRequest(out, ep, "POST", "/v1/accounts", {}, body_of(todo[k]));
    };
    auto on = [&](size_t k, const Reply& r) {
      if (r.status == 201 && created(todo[k], r.body)) return;
      last_error = std::to_string(r.status) + " " + std::string(r.body);
      failed.push_back(todo[k]);
    };
    RETURN_IF_ERROR(RunClosed(ep, connections, todo.size(), make, on).status());
    todo = std::move(failed);
  }
  if (!todo.empty()) {
    return Error(Code::kInternal, std::to_string(todo.size()) +
                                      " accounts could not register; last answer: " + last_error);
  }
  return Status::Ok();
}

}  // namespace meridian::bench
