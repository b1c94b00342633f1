// See trampoline.h. Encodings: Intel SDM vol. 2; every memory operand is
// [r12 + disp32] (REX.B, ModRM mod=10 rm=100, SIB 0x24) except the last
// jump, which is rip-relative (r12 is restored by then).
#include "daemon/python/trampoline.h"

#include <sys/syscall.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace procwarp::python {
namespace {

constexpr long kRestartSys = -512;
constexpr long kRestartNoIntr = -513;
constexpr long kRestartNoHand = -514;
constexpr long kRestartBlock = -516;
constexpr unsigned long long kDirectionFlag = 0x400;
constexpr unsigned long long kTrapFlag = 0x100;
constexpr uint64_t kRedZone = 128;
constexpr uint64_t kGap = 256;

enum Reg { kRax = 0, kRcx, kRdx, kRbx, kRsp, kRbp, kRsi, kRdi, kR8, kR9, kR10,
           kR11, kR12, kR13, kR14, kR15 };

class Emitter {
 public:
  void Bytes(std::initializer_list<uint8_t> b) { code_.append(b.begin(), b.end()); }
  void U32(uint32_t v) { code_.append(reinterpret_cast<const char*>(&v), 4); }
  // OPCODE /reg [r12+disp]; `wide` sets REX.W.
  void R12Op(bool wide, std::initializer_list<uint8_t> opcode, int reg, uint32_t disp) {
    uint8_t rex = 0x41 | (wide ? 0x08 : 0) | (reg >= 8 ? 0x04 : 0);
    code_.push_back(static_cast<char>(rex));
    code_.append(opcode.begin(), opcode.end());
    code_.push_back(static_cast<char>(0x84 | ((reg & 7) << 3)));
    code_.push_back(0x24);
    U32(disp);
  }
  size_t size() const { return code_.size(); }
  std::string take() { return std::move(code_); }

 private:
  std::string code_;
};

uint64_t Align(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

unsigned long long* RegSlot(user_regs_struct& r, int reg) {
  switch (reg) {
    case kRax: return &r.rax;
    case kRcx: return &r.rcx;
    case kRdx: return &r.rdx;
    case kRbx: return &r.rbx;
    case kRsp: return &r.rsp;
    case kRbp: return &r.rbp;
    case kRsi: return &r.rsi;
    case kRdi: return &r.rdi;
    case kR8: return &r.r8;
    case kR9: return &r.r9;
    case kR10: return &r.r10;
    case kR11: return &r.r11;
    case kR12: return &r.r12;
    case kR13: return &r.r13;
    case kR14: return &r.r14;
    default: return &r.r15;
  }
}

}  // namespace

uint64_t TrampolineSize(size_t source_size, size_t xsave_size) {
  return Align(kPage + TrampolineData::kXsave + Align(xsave_size, 64) + source_size + 1,
               kPage);
}

TrampolineLayout LayoutTrampoline(uint64_t base, size_t source_size, size_t xsave_size) {
  TrampolineLayout layout;
  layout.base = base;
  layout.data = base + kPage;
  layout.source = layout.data + TrampolineData::kXsave + Align(xsave_size, 64);
  layout.size = TrampolineSize(source_size, xsave_size);
  return layout;
}

std::string TrampolineCode(const TrampolineLayout& layout, TrampolineEntryCalls calls) {
  using D = TrampolineData;
  const bool gil_state = calls == TrampolineEntryCalls::kGilStateAroundRun;
  Emitter e;
  auto all_ones_mask = [&] {
    e.Bytes({0xb8, 0xff, 0xff, 0xff, 0xff});  // mov eax, -1
    e.Bytes({0xba, 0xff, 0xff, 0xff, 0xff});  // mov edx, -1
  };
  all_ones_mask();
  e.R12Op(true, {0x0f, 0xae}, 4, D::kXsave);          // xsave64 [r12+X]
  if (gil_state) {
    e.R12Op(false, {0xff}, 2, D::kEnsure);             // call [r12+ensure]
    e.R12Op(false, {0x89}, kRax, D::kGilState);        // mov [r12+g], eax
  }
  e.R12Op(true, {0x8d}, kRdi,
          static_cast<uint32_t>(layout.source - layout.data));  // lea rdi, [src]
  e.R12Op(false, {0xff}, 2, D::kRun);                  // call [r12+run]
  if (gil_state) {
    e.R12Op(false, {0x8b}, kRdi, D::kGilState);        // mov edi, [r12+g]
    e.R12Op(false, {0xff}, 2, D::kRelease);            // call [r12+release]
  }
  all_ones_mask();
  e.R12Op(true, {0x0f, 0xae}, 5, D::kXsave);          // xrstor64 [r12+X]
  e.R12Op(true, {0xc7}, 0, D::kDone);                  // mov qword [r12+done], 1
  e.U32(1);
  e.R12Op(false, {0xff}, 6, D::kRflags);               // push qword [r12+rflags]
  e.Bytes({0x9d});                                     // popfq
  for (int reg = kRax; reg <= kR15; ++reg) {
    if (reg == kRsp || reg == kR12) continue;
    e.R12Op(true, {0x8b}, reg, D::kRegs + 8 * reg);    // mov reg, [r12+slot]
  }
  e.R12Op(true, {0x8b}, kRsp, D::kRegs + 8 * kRsp);
  e.R12Op(true, {0x8b}, kR12, D::kRegs + 8 * kR12);    // r12 last: it was the base
  const uint64_t next = layout.base + e.size() + 6;
  e.Bytes({0xff, 0x25});                               // jmp [rip+disp]
  e.U32(static_cast<uint32_t>(layout.data + D::kRip - next));
  e.Bytes({0x0f, 0x0b});                               // ud2: never reached
  return e.take();
}

bool InRestartableSyscall(const user_regs_struct& regs) {
  const long rax = static_cast<long>(regs.rax);
  return static_cast<long>(regs.orig_rax) >= 0 &&
         (rax == kRestartSys || rax == kRestartNoIntr || rax == kRestartNoHand ||
          rax == kRestartBlock);
}

absl::StatusOr<std::string> TrampolineHeader(uint64_t ensure, uint64_t run,
                                             uint64_t release,
                                             const user_regs_struct& stopped) {
  if (!InRestartableSyscall(stopped)) {
    return absl::InvalidArgumentError("the thread is not in a restartable system call");
  }
  user_regs_struct back = stopped;
  // What the kernel does to restart a call when no handler runs.
  back.rip -= 2;
  back.rax = static_cast<long>(stopped.rax) == kRestartBlock
                 ? static_cast<unsigned long long>(SYS_restart_syscall)
                 : stopped.orig_rax;
  std::string header(TrampolineData::kXsave, '\0');
  auto put = [&](uint64_t offset, uint64_t value) {
    std::memcpy(header.data() + offset, &value, 8);
  };
  put(TrampolineData::kEnsure, ensure);
  put(TrampolineData::kRun, run);
  put(TrampolineData::kRelease, release);
  for (int reg = kRax; reg <= kR15; ++reg) {
    put(TrampolineData::kRegs + 8 * reg, *RegSlot(back, reg));
  }
  put(TrampolineData::kRip, back.rip);
  put(TrampolineData::kRflags, back.eflags);
  return header;
}

user_regs_struct TrampolineEntry(const TrampolineLayout& layout,
                                 const user_regs_struct& stopped) {
  user_regs_struct regs = stopped;
  regs.rip = layout.base;
  regs.rsp = (stopped.rsp - kRedZone - kGap) & ~uint64_t{15};
  regs.r12 = layout.data;
  regs.orig_rax = static_cast<unsigned long long>(-1);  // no restart now
  regs.rax = 0;
  regs.eflags &= ~(kDirectionFlag | kTrapFlag);
  return regs;
}

}  // namespace procwarp::python
