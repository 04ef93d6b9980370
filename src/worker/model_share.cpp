#include "worker/model_share.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>

#include "core/base/hex.hpp"
#include "core/base/printable.hpp"
#include "core/dht/types.hpp"
#include "core/model/holder_record.hpp"
#include "core/stream/event.hpp"
#include "net/logger.hpp"
#include "net/loop_thread.hpp"
#include "net/task_pool.hpp"
#include "sidecar/model_file.hpp"
#include "sidecar/model_root.hpp"

namespace qmesh::worker {

namespace model = core::model;
namespace stream = core::stream;
namespace dht = core::dht;
using core::Instant;

namespace {

constexpr std::size_t kReadAhead = 2;           // chunks per stream read (or reading) and not yet written
constexpr std::uint64_t kStopNotReading = 4;    // stop_reading code after our ERROR
constexpr std::uint64_t kMaxRate = 1'000'000'000'000ull;

std::string errno_text(int e) { return std::strerror(e); }

}  // namespace

std::filesystem::path ModelShareOptions::default_roots_dir() { return sidecar::default_roots_dir(); }

std::optional<std::uint64_t> parse_byte_rate(std::string_view text) {
  std::string t(text);
  for (const char* tail : {"B/s", "/s", "B"}) {
    const std::string_view s(tail);
    if (t.size() > s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0) {
      t.resize(t.size() - s.size());
      break;
    }
  }
  std::uint64_t mult = 1;
  static const std::pair<const char*, std::uint64_t> kSuffixes[] = {
      {"Ki", 1ull << 10}, {"Mi", 1ull << 20}, {"Gi", 1ull << 30}, {"k", 1000}, {"K", 1000},
      {"M", 1000'000}, {"G", 1000'000'000}};
  for (const auto& [suf, m] : kSuffixes) {
    const std::string_view s(suf);
    if (t.size() > s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0) {
      t.resize(t.size() - s.size());
      mult = m;
      break;
    }
  }
  if (t.empty() || t.size() > 20) return std::nullopt;
  std::size_t dots = 0;
  for (char ch : t) {
    if (ch == '.') ++dots;
    else if (ch < '0' || ch > '9') return std::nullopt;
  }
  if (dots > 1 || t == ".") return std::nullopt;
  const double v = std::stod(t) * static_cast<double>(mult);
  if (!(v >= 0) || v > static_cast<double>(kMaxRate)) return std::nullopt;
  return static_cast<std::uint64_t>(std::llround(v));
}

struct ModelShare::Impl : std::enable_shared_from_this<ModelShare::Impl> {
  using Key = std::pair<std::uint64_t, std::uint64_t>;  // session, stream
  struct File {
    SharedFile info;
    int fd = -1;
    std::shared_ptr<const model::MerkleTree> tree;
    dht::Topic topic{};
  };
  struct Out {
    std::vector<std::uint8_t> bytes;
    std::size_t off = 0;
    std::uint64_t chunk = model::kNoIndex;  // a CHUNK: written whole -> on_chunk_written
  };
  struct Stream {
    model::TransferDecoder decoder{model::TransferSide::Holder};
    std::deque<Out> out;
    std::size_t chunks_out = 0;  // CHUNKs in `out`
    std::deque<model::ShareServe> to_read;
    std::size_t reading = 0;
    bool closing = false;  // ERROR queued: finish once `out` is written
    bool peer_fin = false;
    bool share_done = false;  // the Share was told the stream ended
  };

  net::PeerService& svc;
  ModelShareOptions opts;
  std::shared_ptr<spdlog::logger> log = net::component_logger("share");
  net::TaskPool disk;
  net::PeerService::AlarmId alarm = 0;

  // Loop thread.
  model::Share share;
  std::map<model::Hash, File> files;
  std::map<Key, Stream> streams;
  std::set<dht::QueryId> announce_queries;
  ModelShareStats st;  // loop's figures; copied to `last` under mu
  bool stopped_loop = false;

  // Any thread.
  mutable std::mutex mu;
  ModelShareStats last;
  bool stopped = false;

  Impl(net::PeerService& s, ModelShareOptions o)
      : svc(s), opts(std::move(o)), disk(std::max<std::size_t>(1, opts.disk_threads), 1 << 16),
        share(opts.share, net::steady_now()) {}

  static model::StreamId sid_of(const Key& k) { return {k.first, k.second}; }

  // ---- streams ----

  void adopt(core::peer::Peer& p, std::uint64_t sid, const stream::Event& ev, std::span<const std::uint8_t> first,
             Instant now) {
    const auto id = stream::stream_of(ev);
    if (!id || stopped_loop) return;
    const Key key{sid, *id};
    Stream& s = streams[key];
    feed(key, s, first, now);
    on_stream(p, sid, ev, now);
  }

  void feed(const Key& key, Stream& s, std::span<const std::uint8_t> bytes, Instant now) {
    if (bytes.empty() || s.closing || s.share_done || s.decoder.failed()) return;
    if (!s.decoder.feed(bytes)) {
      share.on_stream_error(sid_of(key), s.decoder.error(), now);
      return;
    }
    while (auto f = s.decoder.next()) share.on_frame(sid_of(key), std::move(*f), now);
  }

  void on_stream(core::peer::Peer& p, std::uint64_t sid, const stream::Event& ev, Instant now) {
    const auto id = stream::stream_of(ev);
    if (!id) {
      on_session_closed(sid, now);
      return;
    }
    const Key key{sid, *id};
    auto it = streams.find(key);
    if (it == streams.end()) return;
    Stream& s = it->second;
    if (std::holds_alternative<stream::StreamReset>(ev)) {
      end_stream(key, now);
      streams.erase(it);
      drain(p, now);
      return;
    }
    stream::Connection* c = p.sessions().connection(static_cast<core::session::SessionId>(sid));
    if (!c) return;
    std::uint8_t buf[16384];
    while (const auto n = c->read(*id, buf)) feed(key, s, std::span(buf, n), now);
    if (std::holds_alternative<stream::Finished>(ev) && !s.peer_fin) {
      // The getter asks nothing more: what it asked and we hold goes out, the rest is dropped and
      // its upload slot freed (docs/protocol.md: "the getter's FIN frees the holder's slot").
      s.peer_fin = true;
      end_stream(key, now);
    }
    drain(p, now);
    if (auto again = streams.find(key); again != streams.end()) pump(p, key, again->second, now);
  }

  void end_stream(const Key& key, Instant now) {
    auto it = streams.find(key);
    if (it == streams.end() || it->second.share_done) return;
    it->second.share_done = true;
    share.on_stream_closed(sid_of(key), now);
  }

  void on_session_closed(std::uint64_t sid, Instant now) {
    for (auto it = streams.lower_bound({sid, 0}); it != streams.end() && it->first.first == sid;) {
      end_stream(it->first, now);
      it = streams.erase(it);
    }
    drain_actions(now, nullptr);
    arm();
  }

  // Writes what the stream takes; a CHUNK written whole is answered; finishes a stream that is done.
  void pump(core::peer::Peer& p, const Key& key, Stream& s, Instant now) {
    stream::Connection* c = p.sessions().connection(static_cast<core::session::SessionId>(key.first));
    if (!c) return;
    while (!s.out.empty()) {
      Out& o = s.out.front();
      while (o.off < o.bytes.size()) {
        const auto n = c->write(key.second, std::span(o.bytes).subspan(o.off));
        if (n == 0) break;
        o.off += n;
      }
      if (o.off < o.bytes.size()) break;
      if (o.chunk != model::kNoIndex) {
        --s.chunks_out;
        ++st.chunks_written;
        st.bytes_written += o.bytes.size();
        if (!s.share_done) share.on_chunk_written(sid_of(key), o.chunk, now);
      }
      s.out.pop_front();
    }
    start_reads(key, s);
    const bool idle = s.out.empty() && s.reading == 0;
    if (idle && (s.closing || s.peer_fin)) {
      (void)c->finish(key.second);
      end_stream(key, now);
      streams.erase(key);
    }
  }

  // Chunks the Share let through go to the disk pool, kReadAhead at a time per stream.
  void start_reads(const Key& key, Stream& s) {
    while (!s.to_read.empty() && s.reading + s.chunks_out < kReadAhead && !s.closing) {
      const model::ShareServe serve = s.to_read.front();
      s.to_read.pop_front();
      auto f = files.find(serve.root.hash);
      if (f == files.end()) continue;  // no longer shared: the Share ends the stream
      ++s.reading;
      const int fd = f->second.fd;
      auto tree = f->second.tree;
      const std::uint32_t size = serve.root.chunk_size(serve.index);
      auto self = shared_from_this();
      const auto ticket = disk.submit([self, key, fd, tree, size, index = serve.index](bool run) {
        std::vector<std::uint8_t> frame;
        std::string error;
        if (run) {
          std::vector<std::uint8_t> data(size);
          std::size_t got = 0;
          while (got < size) {
            const ssize_t n = ::pread(fd, data.data() + got, size - got,
                                      static_cast<off_t>(index * model::kChunkBytes + got));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
              error = n < 0 ? errno_text(errno) : "the file is shorter than when it was shared";
              break;
            }
            got += static_cast<std::size_t>(n);
          }
          if (error.empty()) frame = model::encode_chunk(index, tree->proof(index), data);
        } else {
          error = "stopping";
        }
        self->svc.post([self, key, index, frame = std::move(frame), error](core::peer::Peer& p, Instant now) mutable {
          self->on_read(p, key, index, std::move(frame), error, now);
        });
      });
      if (ticket == 0) --s.reading;  // closed (stopping): nothing more is served
    }
  }

  void on_read(core::peer::Peer& p, const Key& key, std::uint64_t index, std::vector<std::uint8_t> frame,
               const std::string& error, Instant now) {
    auto it = streams.find(key);
    if (it == streams.end()) return;  // the stream went away meanwhile
    Stream& s = it->second;
    --s.reading;
    if (!error.empty()) {
      ++st.read_errors;
      log->warn("reading chunk {} for a transfer: {}", index, error);
      s.out.push_back(Out{model::encode(model::TransferErrorMsg{model::TransferError::Unavailable,
                                                                "the holder cannot read its copy"}),
                          0, model::kNoIndex});
      close_stream(p, key, s, now);
    } else if (!s.closing) {
      s.out.push_back(Out{std::move(frame), 0, index});
      ++s.chunks_out;
    }
    pump(p, key, s, now);
  }

  void close_stream(core::peer::Peer& p, const Key& key, Stream& s, Instant now) {
    s.closing = true;
    s.to_read.clear();
    end_stream(key, now);
    if (auto* c = p.sessions().connection(static_cast<core::session::SessionId>(key.first)))
      (void)c->stop_reading(key.second, kStopNotReading);
  }

  // Does what the Share asks; then the timer at its next wakeup.
  void drain(core::peer::Peer& p, Instant now) {
    drain_actions(now, &p);
    arm();
  }

  void drain_actions(Instant now, core::peer::Peer* p) {
    std::set<Key> touched;
    while (auto a = share.next_action()) {
      if (auto* send = std::get_if<model::ShareSend>(&*a)) {
        const Key key{send->stream.session, send->stream.stream};
        auto it = streams.find(key);
        if (it == streams.end() || it->second.closing) continue;
        it->second.out.push_back(Out{std::move(send->bytes), 0, model::kNoIndex});
        touched.insert(key);
      } else if (auto* serve = std::get_if<model::ShareServe>(&*a)) {
        const Key key{serve->stream.session, serve->stream.stream};
        auto it = streams.find(key);
        if (it == streams.end() || it->second.closing) continue;
        it->second.to_read.push_back(*serve);
        touched.insert(key);
      } else if (auto* cancel = std::get_if<model::ShareCancel>(&*a)) {
        // A GET the getter took back: dropped if its read has not begun (else its CHUNK goes out).
        const Key key{cancel->stream.session, cancel->stream.stream};
        auto it = streams.find(key);
        if (it == streams.end()) continue;
        auto& q = it->second.to_read;
        auto queued = std::find_if(q.begin(), q.end(),
                                   [&](const model::ShareServe& sv) { return sv.index == cancel->index; });
        if (queued == q.end()) continue;
        q.erase(queued);
        share.on_serve_dropped(cancel->stream, cancel->index, now);
      } else if (auto* close = std::get_if<model::ShareClose>(&*a)) {
        const Key key{close->stream.session, close->stream.stream};
        auto it = streams.find(key);
        if (it == streams.end()) continue;
        log->debug("transfer stream {}/{} ends: {}", key.first, key.second, close->reason);
        it->second.closing = true;
        it->second.to_read.clear();
        it->second.share_done = true;  // the Share closed it itself
        share.on_stream_closed(close->stream, now);
        if (p) {
          if (auto* c = p->sessions().connection(static_cast<core::session::SessionId>(key.first)))
            (void)c->stop_reading(key.second, kStopNotReading);
        }
        touched.insert(key);
      }
    }
    if (!p) return;
    for (const auto& key : touched) {
      if (auto it = streams.find(key); it != streams.end()) pump(*p, key, it->second, now);
    }
  }

  void arm() {
    if (!stopped_loop) svc.arm(alarm, share.next_wakeup());
  }

  void on_alarm(core::peer::Peer& p, Instant now) {
    if (stopped_loop) return;
    share.on_tick(now);
    drain(p, now);
  }

  // ---- announcing ----

  std::vector<std::uint8_t> record_of(const File& f) const {
    model::HolderRecord r;
    r.root = f.info.root;
    r.name = f.info.name;
    const auto max = opts.share.max_uploads;
    r.uploads_free = static_cast<std::uint16_t>(std::min<std::size_t>(
        0xffff, max > share.uploads() ? max - share.uploads() : 0));
    return model::encode_holder_record(r);
  }

  void announce(core::peer::Peer& p, const File& f, Instant now) {
    const auto q = p.dht().announce(f.topic, record_of(f), opts.sign, now, opts.announce_ttl_s);
    announce_queries.insert(q);
    ++st.announces;
  }

  void announce_all(core::peer::Peer& p, Instant now) {
    if (stopped_loop) return;
    for (const auto& [root, f] : files) announce(p, f, now);
  }

  void on_dht_event(const dht::DhtEvent& e) {
    const auto* d = std::get_if<dht::QueryDone>(&e);
    if (!d || !announce_queries.erase(d->query)) return;
    if (d->ok && d->stats.stored > 0) ++st.announces_stored;
    else log->warn("no DHT node stored a holder record (retried at the next refresh)");
  }

  ModelShareStats snapshot() {
    ModelShareStats s = st;
    s.share = share.counters();
    s.streams = streams.size();
    s.uploads = share.uploads();
    s.files = files.size();
    return s;
  }

  void stop_on_loop(core::peer::Peer& p, Instant now) {
    for (const auto& [root, f] : files) (void)p.dht().unannounce(f.topic, now);
    for (auto& [key, s] : streams) {
      end_stream(key, now);
      if (auto* c = p.sessions().connection(static_cast<core::session::SessionId>(key.first)))
        (void)c->reset(key.second, kStopNotReading);
    }
    streams.clear();
    while (share.next_action()) {
    }
    svc.arm(alarm, Instant::max());
    stopped_loop = true;
    std::lock_guard lk(mu);
    last = snapshot();
  }
};

ModelShare::ModelShare(net::PeerService& svc, ModelShareOptions opts)
    : impl_(std::make_shared<Impl>(svc, std::move(opts))) {
  std::weak_ptr<Impl> weak = impl_;
  impl_->alarm = svc.alarm([weak](core::peer::Peer& p, Instant now) {
    if (auto s = weak.lock()) s->on_alarm(p, now);
  });
  svc.every(impl_->opts.announce_every, [weak](core::peer::Peer& p, Instant now) {
    if (auto s = weak.lock()) s->announce_all(p, now);
  });
}

ModelShare::~ModelShare() {
  stop();
  std::lock_guard lk(impl_->mu);
  for (auto& [root, f] : impl_->files) {
    if (f.fd >= 0) ::close(f.fd);
    f.fd = -1;
  }
}

core::Result<SharedFile> ModelShare::add(const std::string& path, const std::string& name) {
  const std::string shown = core::printable_line(path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block
  if (fd < 0) return core::make_error(shown + ": " + errno_text(errno));
  struct stat before {};
  if (::fstat(fd, &before) != 0 || !S_ISREG(before.st_mode)) {
    const int e = errno;
    ::close(fd);
    return core::make_error(shown + ": " + (S_ISDIR(before.st_mode) ? std::string("is a directory")
                                            : !S_ISREG(before.st_mode) ? std::string("not a regular file")
                                                                       : errno_text(e)));
  }
  sidecar::TreeSource source;
  auto tree = sidecar::load_tree(path, impl_->opts.roots_dir, &source);
  if (!tree) {
    ::close(fd);
    return tree.error();
  }
  if (tree->size() != static_cast<std::uint64_t>(before.st_size)) {
    ::close(fd);
    return core::make_error(shown + ": changed while it was hashed");
  }
  Impl::File f;
  f.fd = fd;
  f.info.path = path;
  f.info.root = tree->root();
  f.info.tree_from_cache = source.from_cache;
  f.info.name = name;
  if (f.info.name.empty()) {
    if (auto m = sidecar::inspect_model_file(path); m && !m->name.empty()) f.info.name = m->name;
  }
  if (f.info.name.empty() || !core::valid_utf8_printable(f.info.name))
    f.info.name = std::filesystem::path(path).stem().string();
  if (!core::valid_utf8_printable(f.info.name)) f.info.name = "model";
  const auto topic_name = model::holder_topic_name(f.info.root.hash);
  f.topic = impl_->opts.mesh ? core::session::mesh_topic(*impl_->opts.mesh, topic_name) : dht::topic_from_name(topic_name);
  f.tree = std::make_shared<const model::MerkleTree>(std::move(*tree));
  const SharedFile out = f.info;
  int added = -1;  // -1: stopped, 0: shared already (the same bytes), 1: added
  try {
    added = impl_->svc.call([&](core::peer::Peer& p, Instant now) {
      if (impl_->stopped_loop) return -1;
      auto [it, fresh] = impl_->files.try_emplace(out.root.hash, std::move(f));
      if (!fresh) return 0;
      impl_->share.add_model(out.root);
      impl_->announce(p, it->second, now);
      return 1;
    });
  } catch (const std::exception&) {
  }
  if (added != 1) ::close(fd);
  if (added < 0) return core::make_error("not sharing " + shown + ": stopping");
  if (added == 1)
    impl_->log->info("sharing {} {} ({} bytes{})", out.name, core::to_hex(out.root.hash), out.root.size,
                     out.tree_from_cache ? ", tree from the cache" : "");
  return out;
}

bool ModelShare::owns(std::uint64_t sid, std::uint64_t stream) const {
  return impl_->streams.count({sid, stream}) > 0;
}

void ModelShare::adopt(core::peer::Peer& p, std::uint64_t sid, const stream::Event& ev,
                       std::span<const std::uint8_t> first, Instant now) {
  impl_->adopt(p, sid, ev, first, now);
}

void ModelShare::on_stream(core::peer::Peer& p, std::uint64_t sid, const stream::Event& ev, Instant now) {
  impl_->on_stream(p, sid, ev, now);
}

void ModelShare::on_session_closed(std::uint64_t sid, Instant now) { impl_->on_session_closed(sid, now); }

void ModelShare::on_dht_event(const dht::DhtEvent& e) { impl_->on_dht_event(e); }

void ModelShare::on_event(const core::peer::PeerEvent& e, core::peer::Peer& p, Instant now) {
  if (const auto* de = std::get_if<dht::DhtEvent>(&e)) {
    on_dht_event(*de);
    return;
  }
  const auto* he = std::get_if<core::session::HostEvent>(&e);
  if (!he) return;
  if (const auto* a = std::get_if<core::session::StreamActivity>(he)) {
    const auto id = stream::stream_of(a->event);
    if (id && !owns(a->sid, *id)) {
      // Every stream opens with StreamOpened; a later event of an unknown one is of a stream
      // already ended here.
      if (!std::holds_alternative<stream::StreamOpened>(a->event)) return;
      adopt(p, a->sid, a->event, {}, now);
      return;
    }
    on_stream(p, a->sid, a->event, now);
  } else if (const auto* c = std::get_if<core::session::SessionClosed>(he)) {
    on_session_closed(c->sid, now);
  }
}

ModelShareStats ModelShare::stats() const {
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->stopped) return impl_->last;
  }
  try {
    return impl_->svc.call([this](core::peer::Peer&, Instant) { return impl_->snapshot(); });
  } catch (const std::exception&) {
    std::lock_guard lk(impl_->mu);
    return impl_->last;
  }
}

void ModelShare::stop() {
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  // Reads under way finish and post their result (dropped: the streams are gone by then).
  try {
    impl_->svc.call([this](core::peer::Peer& p, Instant now) { impl_->stop_on_loop(p, now); });
  } catch (const std::exception&) {
  }
  impl_->disk.close();
}

}  // namespace qmesh::worker
