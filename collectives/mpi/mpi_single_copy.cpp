#include "collectives/mpi/mpi_single_copy.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string_view>
#include <vector>

namespace dtensor::detail {

namespace {

// Blocks of many short rows are packed (send) or received into a contiguous stand-in and
// unpacked (receive) here, on this rank, around the cross-process copy: the kernel pins the
// pages of every iovec of the peer's side separately, so short rows are slow there (its own
// side's iovecs are cheap). Measured on this machine, 32 MiB in rows of 64 B: 60 ms on the local
// side, 300 ms on the remote side; 512 B: 14 / 55 ms; 2 KiB: - / 21 ms; 8 KiB: 11 / 12 ms;
// against 8-10 ms contiguous and ~3.5 ms for a local memcpy of the same bytes. A send block
// ends up on the peer's side when the receiving block is as fragmented (e.g. gathering a column
// view into column blocks), hence the higher bar for send blocks.
constexpr int64_t kMinSendRowBytes = 4096;
constexpr int64_t kMinRecvRowBytes = 1024;
// Scratch for those is kept from call to call up to this size: a fresh buffer arrives as pages
// the kernel must fault in and zero on every call (3 stand-ins of 64 KiB made a 1 MiB
// all_gather on 4 ranks take 0.55 instead of 0.2 ms).
constexpr int64_t kKeptScratchBytes = int64_t(16) << 20;
// The kernel caps one call at about 2 GiB (MAX_RW_COUNT); batches stay well below.
constexpr int64_t kMaxBatchBytes = int64_t(1) << 30;
constexpr int kMaxIovecs = IOV_MAX;
constexpr uint64_t kProbePattern = 0x5d7e15c0c0ffee00ULL;

// What a rank tells peer j: its pid, its block for j and where j's data lands in it.
struct BlockRecord {
  uint64_t address;
  int64_t rows;
  int64_t row_bytes;
  int64_t row_stride;
};
struct PeerRecord {
  int64_t pid;
  BlockRecord send;
  BlockRecord recv;
};

BlockRecord record_of(const ByteBlock& b) {
  return {reinterpret_cast<uint64_t>(b.data), b.rows, b.row_bytes, b.row_stride};
}

// A block in a peer's address space: its pointer is only ever handed to the kernel.
ByteBlock block_of(const BlockRecord& r) {
  return {reinterpret_cast<std::byte*>(r.address), r.rows, r.row_bytes, r.row_stride};
}

bool disabled_by_environment() {
  const char* value = std::getenv("DTENSOR_SINGLE_COPY");
  return value != nullptr && std::string_view(value) == "0";
}

bool all_on_one_node(MPI_Comm comm, int size) {
  MPI_Comm node = MPI_COMM_NULL;
  mpi_check(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
  int node_size = 0;
  mpi_check(MPI_Comm_size(node, &node_size), "MPI_Comm_size");
  mpi_check(MPI_Comm_free(&node), "MPI_Comm_free");
  return node_size == size;
}

// Blocks with many short rows go through a local buffer (see kMinSendRowBytes).
bool needs_staging(const ByteBlock& b, int64_t min_row_bytes) { return b.rows > 1 && b.row_bytes < min_row_bytes; }
bool stage_send(const ByteBlock& b) { return needs_staging(b, kMinSendRowBytes); }
bool stage_recv(const ByteBlock& b) { return needs_staging(b, kMinRecvRowBytes); }

constexpr int64_t kScratchAlign = 64;
int64_t padded(int64_t bytes) { return (bytes + kScratchAlign - 1) / kScratchAlign * kScratchAlign; }

// Bytes of scratch the blocks with short rows need (PublishedBlocks below carves it the same way).
int64_t staged_bytes(std::span<const ByteBlock> sends, std::span<const ByteBlock> recvs, int self) {
  int64_t total = 0;
  const std::byte* packed_from = nullptr;
  for (size_t j = 0; j < sends.size(); ++j) {
    if (int(j) == self) continue;
    if (stage_send(sends[j]) && sends[j].data != packed_from) {
      total += padded(sends[j].bytes());
      packed_from = sends[j].data;
    }
    if (stage_recv(recvs[j])) total += padded(recvs[j].bytes());
  }
  return total;
}

// The blocks peers see: the caller's, or pieces of `scratch` in place of blocks with short rows
// (send blocks packed into them now, receive blocks unpacked from them by unpack()).
struct PublishedBlocks {
  std::vector<ByteBlock> send, recv;
  std::vector<std::pair<ByteBlock, ByteBlock>> unpacks;  // (caller's recv block, its piece)

  PublishedBlocks(std::span<const ByteBlock> sends, std::span<const ByteBlock> recvs, int self, std::byte* scratch) {
    auto carve = [&scratch](int64_t bytes) {
      ByteBlock piece{scratch, 1, bytes, bytes};
      scratch += padded(bytes);
      return piece;
    };
    // all_gather sends one block to everyone: it is packed once.
    const std::byte* packed_from = nullptr;
    ByteBlock packed;
    for (size_t j = 0; j < sends.size(); ++j) {
      const bool own = int(j) == self;
      if (own || !stage_send(sends[j])) {
        send.push_back(sends[j]);
      } else if (sends[j].data == packed_from) {
        send.push_back(packed);
      } else {
        packed = send.emplace_back(carve(sends[j].bytes()));
        copy_bytes(packed, sends[j]);
        packed_from = sends[j].data;
      }
      if (own || !stage_recv(recvs[j])) {
        recv.push_back(recvs[j]);
      } else {
        recv.push_back(carve(recvs[j].bytes()));
        unpacks.emplace_back(recvs[j], recv.back());
      }
    }
  }
  void unpack() const {
    for (const auto& [dst, src] : unpacks) copy_bytes(dst, src);
  }
};

// Which side of a transfer copies: the one whose peer-side block has fewer pieces, since the
// kernel's cost is per remote iovec (local iovecs are cheap). Both ranks of a pair compute this
// from the same two records, so exactly one of them copies.
bool receiver_pulls(const ByteBlock& src, const ByteBlock& dst) { return src.fragments() <= dst.fragments(); }

enum class Direction { Read, Write };

// The next `bytes` bytes of the cursor as iovecs; returns how many.
int take_iovecs(BlockCursor& cursor, int64_t bytes, iovec* out) {
  int n = 0;
  while (bytes > 0) {
    auto [p, len] = cursor.next(bytes);
    out[n++] = {p, size_t(len)};
    bytes -= len;
  }
  return n;
}

// Moves local <-> remote (equal sizes) in the process `pid` of rank `peer`, in batches of at
// most kMaxIovecs pieces a side. Anything short of the full size is a CommError.
void transfer(const char* op, Direction direction, int peer, pid_t pid, const ByteBlock& local,
              const ByteBlock& remote) {
  const char* call = direction == Direction::Read ? "process_vm_readv" : "process_vm_writev";
  std::vector<iovec> local_iov(static_cast<size_t>(kMaxIovecs));
  std::vector<iovec> remote_iov(static_cast<size_t>(kMaxIovecs));
  BlockCursor l(local), r(remote);
  while (r.remaining() > 0) {
    const int64_t n = std::min(l.reach(kMaxIovecs, kMaxBatchBytes), r.reach(kMaxIovecs, kMaxBatchBytes));
    check<CommError>(n > 0, op, "{} with rank {}: blocks of {} and {} bytes do not match", call, peer, local.bytes(),
                     remote.bytes());
    const int nl = take_iovecs(l, n, local_iov.data());
    const int nr = take_iovecs(r, n, remote_iov.data());
    const ssize_t moved = direction == Direction::Read
                              ? process_vm_readv(pid, local_iov.data(), nl, remote_iov.data(), nr, 0)
                              : process_vm_writev(pid, local_iov.data(), nl, remote_iov.data(), nr, 0);
    if (moved < 0) {
      fail<CommError>(op, "{} with rank {} (pid {}) failed: {}", call, peer, pid, std::strerror(errno));
    }
    check<CommError>(moved == n, op, "{} with rank {} (pid {}) moved {} of {} bytes", call, peer, pid, moved, n);
  }
}

void check_sizes(const char* op, int peer, const ByteBlock& mine_for_peer, const BlockRecord& peers_for_me,
                 const char* what) {
  const int64_t theirs = peers_for_me.rows * peers_for_me.row_bytes;
  check<CommError>(mine_for_peer.bytes() == theirs, op,
                   "{}: this rank's block holds {} bytes, rank {}'s holds {} (blocks must match in size)", what,
                   mine_for_peer.bytes(), peer, theirs);
}

// Every transfer this rank performs, peers in ring order so that no rank is everyone's first.
void move_blocks(const char* op, int rank, int size, const PublishedBlocks& mine, std::span<const PeerRecord> theirs) {
  for (int j = 0; j < size; ++j) {
    if (j == rank) continue;
    check_sizes(op, j, mine.recv[size_t(j)], theirs[size_t(j)].send, "receiving from rank");
    check_sizes(op, j, mine.send[size_t(j)], theirs[size_t(j)].recv, "sending to rank");
  }
  for (int k = 1; k < size; ++k) {
    const auto from = size_t((rank - k + size) % size);
    const ByteBlock incoming = block_of(theirs[from].send);
    if (incoming.bytes() > 0 && receiver_pulls(incoming, mine.recv[from])) {
      transfer(op, Direction::Read, int(from), pid_t(theirs[from].pid), mine.recv[from], incoming);
    }
    const auto to = size_t((rank + k) % size);
    const ByteBlock outgoing = block_of(theirs[to].recv);
    if (outgoing.bytes() > 0 && !receiver_pulls(mine.send[to], outgoing)) {
      transfer(op, Direction::Write, int(to), pid_t(theirs[to].pid), mine.send[to], outgoing);
    }
  }
}

}  // namespace

SingleCopyExchange::SingleCopyExchange(MPI_Comm comm) : comm_(comm), pid_(getpid()) {
  mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

bool SingleCopyExchange::all_agree(bool mine) const {
  int vote = mine ? 1 : 0;
  int all = 0;
  mpi_check(MPI_Allreduce(&vote, &all, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
  return all == 1;
}

bool SingleCopyExchange::supported() {
  if (support_ == Support::Unknown) support_ = probe() ? Support::Yes : Support::No;
  return support_ == Support::Yes;
}

// Every rank reads a known word from every peer; any refusal (ptrace rules, seccomp, another
// node) sends the whole group to the staging path.
bool SingleCopyExchange::probe() {
  const bool one_node = all_on_one_node(comm_, size_);
  if (!all_agree(one_node && !disabled_by_environment())) return false;
  probe_word_ = kProbePattern ^ uint64_t(rank_);
  const int64_t mine[2] = {int64_t(pid_), int64_t(reinterpret_cast<uintptr_t>(&probe_word_))};
  std::vector<int64_t> all(2 * size_t(size_));
  mpi_check(MPI_Allgather(mine, 2, MPI_INT64_T, all.data(), 2, MPI_INT64_T, comm_), "MPI_Allgather");
  bool ok = true;
  for (int j = 0; j < size_ && ok; ++j) {
    if (j == rank_) continue;
    uint64_t word = 0;
    iovec local{&word, sizeof word};
    iovec remote{reinterpret_cast<void*>(all[2 * size_t(j) + 1]), sizeof word};
    ok = process_vm_readv(pid_t(all[2 * size_t(j)]), &local, 1, &remote, 1, 0) == ssize_t(sizeof word) &&
         word == (kProbePattern ^ uint64_t(j));
  }
  return all_agree(ok);  // also keeps probe_word_ readable until every peer is done
}

bool SingleCopyExchange::run(const char* op, std::span<const ByteBlock> send, std::span<const ByteBlock> recv) {
  if (!supported()) return false;
  PublishedBlocks mine(send, recv, rank_, scratch(staged_bytes(send, recv, rank_)));
  std::vector<PeerRecord> records(static_cast<size_t>(size_));
  std::vector<PeerRecord> theirs(static_cast<size_t>(size_));
  for (size_t j = 0; j < records.size(); ++j) {
    records[j] = {int64_t(pid_), record_of(mine.send[j]), record_of(mine.recv[j])};
  }
  mpi_check(MPI_Alltoall(records.data(), int(sizeof(PeerRecord)), MPI_BYTE, theirs.data(), int(sizeof(PeerRecord)),
                         MPI_BYTE, comm_),
            "MPI_Alltoall");
  std::exception_ptr error;
  try {
    move_blocks(op, rank_, size_, mine, theirs);
    copy_bytes(recv[size_t(rank_)], send[size_t(rank_)]);
  } catch (...) {
    error = std::current_exception();
  }
  // The end of the operation for everyone: after this no peer touches this rank's blocks.
  int failed = error ? rank_ : size_;
  int first_failed = size_;
  mpi_check(MPI_Allreduce(&failed, &first_failed, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
  if (error) std::rethrow_exception(error);
  check<CommError>(first_failed == size_, op, "rank {} failed during the single-copy exchange (see its message)",
                   first_failed);
  mine.unpack();
  if (scratch_.numel() > kKeptScratchBytes) scratch_ = Tensor();
  return true;
}

std::byte* SingleCopyExchange::scratch(int64_t bytes) {
  if (bytes == 0) return nullptr;
  if (scratch_.numel() < bytes) scratch_ = Tensor::empty({bytes}, DType::U8);
  return static_cast<std::byte*>(scratch_.data_ptr());
}

}  // namespace dtensor::detail
