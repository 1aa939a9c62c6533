#include "io/tls_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "io/posix.hpp"
#include "io/tls.hpp"

namespace sweepd::io {

namespace {

/// A write to a connection the peer closed raises SIGPIPE, which would kill the client (sweepctl,
/// a test): OpenSSL writes with write(2), not send(MSG_NOSIGNAL). The signal is blocked while
/// OpenSSL writes, and one the write raised is taken back before it is unblocked.
class sigpipe_held {
 public:
  sigpipe_held() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pending_before_ = sigpipe_pending();
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~sigpipe_held() {
    if (!pending_before_ && sigpipe_pending()) {
      const timespec now{};
      sigtimedwait(&pipe_, nullptr, &now);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  sigpipe_held(const sigpipe_held&) = delete;
  sigpipe_held& operator=(const sigpipe_held&) = delete;

 private:
  static bool sigpipe_pending() {
    sigset_t pending;
    sigpending(&pending);
    return sigismember(&pending, SIGPIPE) == 1;
  }
  sigset_t pipe_{};
  sigset_t old_{};
  bool pending_before_ = false;
};

int ms_until(tls_connection::clock::time_point deadline) {
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - tls_connection::clock::now());
  return static_cast<int>(std::clamp<long long>(left.count(), 0, 86400000));
}

bool is_ip_address(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

struct addrinfo_free {
  void operator()(addrinfo* a) const { ::freeaddrinfo(a); }
};

}  // namespace

core::result<daemon_address> parse_daemon_address(std::string_view text) {
  daemon_address out;
  if (text.starts_with("tls://")) {
    std::string_view rest = text.substr(6);
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) {
      return core::failure{fmt::format("address '{}': expected tls://HOST:PORT", text)};
    }
    std::string_view host = rest.substr(0, colon);
    const std::string_view port = rest.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    for (char c : port) {
      if (c < '0' || c > '9' || port.size() > 5) {
        return core::failure{fmt::format("address '{}': the port is not a number", text)};
      }
    }
    out.remote = true;
    out.host = host;
    out.port = port;
    return out;
  }
  if (text.find("://") != std::string_view::npos) {
    return core::failure{
        fmt::format("address '{}': only tls://HOST:PORT or a socket path are known", text)};
  }
  if (text.starts_with("unix:")) text.remove_prefix(5);
  if (text.empty()) return core::failure{"the socket path is empty"};
  out.path = text;
  return out;
}

tls_connection::~tls_connection() { close(); }

void tls_connection::close() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  if (fd_ >= 0) ::close(fd_);
  ssl_ = nullptr;
  ctx_ = nullptr;
  fd_ = -1;
}

bool tls_connection::wait(int ssl_error, clock::time_point deadline) {
  for (;;) {
    const int left = ms_until(deadline);
    if (left <= 0) return false;
    pollfd pfd{fd_, static_cast<short>(ssl_error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
    const int ready = ::poll(&pfd, 1, left);
    if (ready < 0 && errno == EINTR) continue;
    return ready > 0;
  }
}

bool tls_connection::connect_tcp(const std::string& host, const std::string& port,
                                 clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &raw); rc != 0) {
    error_ = fmt::format("cannot resolve {}: {}", host, ::gai_strerror(rc));
    return false;
  }
  const std::unique_ptr<addrinfo, addrinfo_free> list(raw);
  for (const addrinfo* a = list.get(); a != nullptr; a = a->ai_next) {
    fd_ = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd_ < 0) continue;
    if (::connect(fd_, a->ai_addr, a->ai_addrlen) == 0 ||
        (errno == EINPROGRESS && wait(SSL_ERROR_WANT_WRITE, deadline))) {
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) {
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return true;
      }
      errno = err;
    } else if (errno == EINPROGRESS) {
      errno = ETIMEDOUT;
    }
    error_ = fmt::format("cannot connect to sweepd at {}: {}", peer_, errno_text(errno));
    ::close(fd_);
    fd_ = -1;
  }
  if (error_.empty()) error_ = fmt::format("cannot connect to sweepd at {}", peer_);
  return false;
}

bool tls_connection::connect(const std::string& host, const std::string& port,
                             const tls_client_options& options, clock::time_point deadline) {
  close();
  error_.clear();
  peer_ = fmt::format("tls://{}:{}", host.find(':') != std::string::npos ? "[" + host + "]" : host,
                      port);
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) {
    error_ = "cannot set up TLS: " + openssl_reason("out of memory");
    return false;
  }
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  const bool trusted = options.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx_) == 1
                                               : SSL_CTX_load_verify_locations(
                                                     ctx_, options.ca_file.c_str(), nullptr) == 1;
  if (!trusted) {
    error_ = options.ca_file.empty()
                 ? "cannot load the system's trusted CAs: " + openssl_reason("unknown error")
                 : fmt::format("--ca-file {}: cannot use it as PEM certificates: {}",
                               options.ca_file, openssl_reason("unreadable"));
    close();
    return false;
  }
  if (!connect_tcp(host, port, deadline)) {
    close();
    return false;
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  if (is_ip_address(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str());
  } else {
    // SNI; SSL_set_tlsext_host_name is a macro with a C cast.
    SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(host.c_str()));
    SSL_set1_host(ssl_, host.c_str());
  }
  for (;;) {
    const sigpipe_held held;  // the handshake writes too
    const int rc = SSL_connect(ssl_);
    if (rc == 1) return true;
    const int err = SSL_get_error(ssl_, rc);
    if ((err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) && wait(err, deadline)) {
      continue;
    }
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      error_ = fmt::format(
          "TLS handshake with sweepd at {} failed: its certificate is not "
          "trusted ({}); --ca-file names the CA that signed it",
          peer_, X509_verify_cert_error_string(verify));
    } else if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      error_ = fmt::format("TLS handshake with sweepd at {} timed out", peer_);
    } else {
      error_ = fmt::format("TLS handshake with sweepd at {} failed: {}", peer_,
                           openssl_reason("the connection was closed"));
    }
    close();
    return false;
  }
}

bool tls_connection::send(std::string_view bytes, clock::time_point deadline) {
  while (!bytes.empty()) {
    if (ssl_ == nullptr) {
      error_ = "not connected to sweepd";
      return false;
    }
    const sigpipe_held held;
    const int n = SSL_write(ssl_, bytes.data(),
                            static_cast<int>(std::min<std::size_t>(bytes.size(), 1 << 20)));
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if ((err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) && wait(err, deadline))
      continue;
    error_ = err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE
                 ? fmt::format("sweepd at {} is not reading", peer_)
                 : fmt::format("cannot send to sweepd at {}: {}", peer_,
                               openssl_reason("the connection was closed"));
    return false;
  }
  return true;
}

long tls_connection::receive_now(char* buffer, std::size_t size) {
  if (ssl_ == nullptr) {
    error_ = "not connected to sweepd";
    return -1;
  }
  ERR_clear_error();
  const sigpipe_held held;  // a read may answer the server (a TLS 1.3 key update)
  const int n = SSL_read(ssl_, buffer, static_cast<int>(std::min<std::size_t>(size, 1 << 20)));
  if (n > 0) return n;
  const int err = SSL_get_error(ssl_, n);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return -2;
  if (err == SSL_ERROR_ZERO_RETURN) return 0;
  if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
    // The peer closed the TCP connection without close_notify: an end all the same (sweepd was
    // killed, or restarted).
    return 0;
  }
  error_ = fmt::format("cannot read from sweepd at {}: {}", peer_,
                       openssl_reason("the connection failed"));
  return -1;
}

long tls_connection::receive(char* buffer, std::size_t size, clock::time_point deadline) {
  for (;;) {
    const long n = receive_now(buffer, size);
    if (n != -2) return n;
    if (!wait(SSL_ERROR_WANT_READ, deadline)) {
      error_ = fmt::format("no reply from sweepd at {} in time", peer_);
      return -1;
    }
  }
}

}  // namespace sweepd::io
