#include "storage/codec.h"

namespace meridian::storage {
namespace {
constexpr std::string_view kTag = "mv0:";

class FramingCodec final : public ValueCodec {
 public:
  using ValueCodec::Seal;
  Result<std::string> Seal(const CodecContext&, std::string_view plaintext, Wait) override {
    std::string out(kTag);
    out.append(plaintext);
    return out;
  }
  Result<std::string> Open(const CodecContext&, std::string_view stored) override {
    if (stored.substr(0, kTag.size()) != kTag) {
      return Error(Code::kIntegrityError, "stored value has an unknown format");
    }
    return std::string(stored.substr(kTag.size()));
  }
  Result<std::string> ShredDeferred(std::string_view) override { return std::string(); }
  Status PurgeShredded() override { return Status::Ok(); }
};
}  // namespace

Result<std::string> ValueCodec::Shred(std::string_view user_id) {
  ASSIGN_OR_RETURN(auto id, ShredDeferred(user_id));
  RETURN_IF_ERROR(PurgeShredded());
  return id;
}

std::unique_ptr<ValueCodec> MakeFramingCodec() { return std::make_unique<FramingCodec>(); }

}  // namespace meridian::storage
