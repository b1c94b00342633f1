// See memory_service.h.
#include "daemon/memory/memory_service.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/memory/thread_memory.h"
#include "daemon/server/log.h"
#include "daemon/thread/threads_service.h"
#include "daemon/util/errno_status.h"
#include "daemon/util/status_macros.h"

namespace procwarp {
namespace {

// Unary replies stay under gRPC's default 4 MiB receive limit of clients.
constexpr uint64_t kMaxUnaryBytes = (4 << 20) - (64 << 10);
constexpr uint64_t kStreamChunk = 1 << 20;
// An allocation larger than this is more likely a mistake than a plan.
constexpr uint64_t kMaxAllocation = uint64_t{1} << 40;

absl::StatusOr<int> ProtectionBits(procwarp::v1::Protection protection) {
  switch (protection) {
    case procwarp::v1::PROTECTION_UNSPECIFIED:
    case procwarp::v1::PROTECTION_READ_WRITE:
      return PROT_READ | PROT_WRITE;
    case procwarp::v1::PROTECTION_READ:
      return PROT_READ;
    case procwarp::v1::PROTECTION_READ_EXEC:
      return PROT_READ | PROT_EXEC;
    case procwarp::v1::PROTECTION_READ_WRITE_EXEC:
      return PROT_READ | PROT_WRITE | PROT_EXEC;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Allocate: unknown protection ", protection));
  }
}

}  // namespace

absl::Status CheckPointerRange(const procwarp::v1::Pointer& pointer,
                               uint64_t offset, uint64_t length,
                               absl::string_view call) {
  if (offset > pointer.size() || length > pointer.size() - offset) {
    return absl::OutOfRangeError(absl::StrCat(
        call, ": bytes [", offset, ", ", offset + length, ") are outside pointer ",
        pointer.id(), " of ", pointer.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<procwarp::v1::Mapping>> ParseMaps(
    absl::string_view text) {
  std::vector<procwarp::v1::Mapping> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    // start-end perms offset dev inode [path]
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::MaxSplits(' ', 5), absl::SkipEmpty());
    if (fields.size() < 5) {
      return absl::InternalError(absl::StrCat("unparsable maps line '", line, "'"));
    }
    std::pair<absl::string_view, absl::string_view> range =
        absl::StrSplit(fields[0], '-');
    procwarp::v1::Mapping mapping;
    uint64_t start = 0, end = 0, offset = 0, inode = 0;
    if (!absl::SimpleHexAtoi(range.first, &start) ||
        !absl::SimpleHexAtoi(range.second, &end) ||
        !absl::SimpleHexAtoi(fields[2], &offset) ||
        !absl::SimpleAtoi(fields[4], &inode)) {
      return absl::InternalError(absl::StrCat("unparsable maps line '", line, "'"));
    }
    mapping.set_start(start);
    mapping.set_end(end);
    mapping.set_permissions(std::string(fields[1]));
    mapping.set_offset(offset);
    mapping.set_device(std::string(fields[3]));
    mapping.set_inode(inode);
    if (fields.size() > 5) {
      mapping.set_path(std::string(absl::StripLeadingAsciiWhitespace(fields[5])));
    }
    out.push_back(std::move(mapping));
  }
  return out;
}

grpc::Status MemoryService::Allocate(grpc::ServerContext* context,
                                     const procwarp::v1::AllocateRequest* request,
                                     procwarp::v1::AllocateResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    if (request->size() == 0 || request->size() > kMaxAllocation) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Allocate: size ", request->size(), " must be between 1 and ",
          kMaxAllocation));
    }
    ASSIGN_OR_RETURN(int prot, ProtectionBits(request->protection()));
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    const uint64_t args[] = {0, request->size(), static_cast<uint64_t>(prot),
                             MAP_PRIVATE | MAP_ANONYMOUS,
                             static_cast<uint64_t>(-1), 0};
    absl::StatusOr<int64_t> mapped = thread->connection().Syscall(SYS_mmap, args);
    RETURN_IF_ERROR(ExplainThreadError(*thread, mapped.status()));
    if (*mapped < 0 && *mapped >= -4095) {
      return ErrnoStatus(static_cast<int>(-*mapped),
                         absl::StrCat("Allocate: mmap(", request->size(),
                                      " bytes) in ", thread->Name()));
    }
    ASSIGN_OR_RETURN(*response->mutable_pointer(),
                     table_->AddPointer(thread, static_cast<uint64_t>(*mapped),
                                        request->size()));
    return absl::OkStatus();
  });
}

grpc::Status MemoryService::Read(grpc::ServerContext* context,
                                 const procwarp::v1::ReadMemoryRequest* request,
                                 procwarp::v1::ReadMemoryResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(ResolvedPointer p,
                     table_->FindPointer(request->pointer_id(), caller));
    RETURN_IF_ERROR(CheckPointerRange(p.pointer, request->offset(),
                                      request->length(), "Read"));
    if (request->length() > kMaxUnaryBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Read: ", request->length(), " bytes is more than one reply carries (",
          kMaxUnaryBytes, "); use ReadStream"));
    }
    std::string* data = response->mutable_data();
    data->resize(request->length());
    return ReadThreadMemory(*p.thread, p.pointer.address() + request->offset(),
                            data->data(), data->size());
  });
}

grpc::Status MemoryService::ReadStream(
    grpc::ServerContext* context, const procwarp::v1::ReadMemoryRequest* request,
    grpc::ServerWriter<procwarp::v1::ReadMemoryChunk>* writer) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(ResolvedPointer p,
                     table_->FindPointer(request->pointer_id(), caller));
    RETURN_IF_ERROR(CheckPointerRange(p.pointer, request->offset(),
                                      request->length(), "ReadStream"));
    // One message, reused: its buffer is allocated (and faulted in) once.
    procwarp::v1::ReadMemoryChunk chunk;
    for (uint64_t done = 0; done < request->length();) {
      uint64_t n = std::min(kStreamChunk, request->length() - done);
      uint64_t offset = request->offset() + done;
      chunk.set_offset(offset);
      std::string* data = chunk.mutable_data();
      data->resize(n);
      RETURN_IF_ERROR(ReadThreadMemory(*p.thread, p.pointer.address() + offset,
                                       data->data(), n));
      if (!writer->Write(chunk)) {
        return absl::CancelledError("ReadStream: the client went away");
      }
      done += n;
    }
    return absl::OkStatus();
  });
}

absl::Status MemoryService::WriteOne(
    const Identity& caller, const procwarp::v1::WriteMemoryRequest& request,
    procwarp::v1::WriteMemoryResponse* response) {
  ASSIGN_OR_RETURN(ResolvedPointer p,
                   table_->FindPointer(request.pointer_id(), caller));
  RETURN_IF_ERROR(CheckPointerRange(p.pointer, request.offset(),
                                    request.data().size(), "Write"));
  RETURN_IF_ERROR(WriteThreadMemory(
      *p.thread, p.pointer.address() + request.offset(), request.data()));
  response->set_written(response->written() + request.data().size());
  return absl::OkStatus();
}

grpc::Status MemoryService::Write(grpc::ServerContext* context,
                                  const procwarp::v1::WriteMemoryRequest* request,
                                  procwarp::v1::WriteMemoryResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    return WriteOne(caller, *request, response);
  });
}

grpc::Status MemoryService::WriteStream(
    grpc::ServerContext* context,
    grpc::ServerReader<procwarp::v1::WriteMemoryRequest>* reader,
    procwarp::v1::WriteMemoryResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    procwarp::v1::WriteMemoryRequest request;
    while (reader->Read(&request)) {
      RETURN_IF_ERROR(WriteOne(caller, request, response));
    }
    return absl::OkStatus();
  });
}

grpc::Status MemoryService::Free(grpc::ServerContext* context,
                                 const procwarp::v1::FreeRequest* request,
                                 procwarp::v1::FreeResponse*) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(ResolvedPointer p,
                     table_->RemovePointer(request->pointer_id(), caller));
    const uint64_t args[] = {p.pointer.address(), p.pointer.size()};
    absl::StatusOr<int64_t> unmapped =
        p.thread->connection().Syscall(SYS_munmap, args);
    // A dead thread's memory is gone with it: freeing it is done.
    if (!unmapped.ok()) return absl::OkStatus();
    if (*unmapped < 0) {
      return ErrnoStatus(static_cast<int>(-*unmapped),
                         absl::StrCat("Free: munmap in ", p.thread->Name()));
    }
    return absl::OkStatus();
  });
}

grpc::Status MemoryService::Maps(grpc::ServerContext* context,
                                 const procwarp::v1::MapsRequest* request,
                                 procwarp::v1::MapsResponse* response) {
  return WithCaller(*callers_, context, [&](const Identity& caller) {
    ASSIGN_OR_RETURN(auto thread, table_->Find(request->thread_id(), caller));
    std::string text;
    RETURN_IF_ERROR(thread->WithLivePid([&](pid_t pid) {
      std::string path = absl::StrCat("/proc/", pid, "/maps");
      std::ifstream in(path);
      if (!in) return ErrnoStatus(errno, absl::StrCat("Maps: open(", path, ")"));
      std::stringstream buffer;
      buffer << in.rdbuf();
      text = buffer.str();
      return absl::OkStatus();
    }));
    ASSIGN_OR_RETURN(auto mappings, ParseMaps(text));
    for (auto& m : mappings) *response->add_mappings() = std::move(m);
    return absl::OkStatus();
  });
}

}  // namespace procwarp
