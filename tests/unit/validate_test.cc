#include <gtest/gtest.h>

#include "accounts/validate.h"

#include <fmt/format.h>

namespace meridian::accounts {
namespace {

struct PhoneCase {
  const char* country;
  const char* raw;
  const char* e164;
};

TEST(PhoneTest, NormalisesNumbersOfManyCountriesToE164) {
  const PhoneCase cases[] = {
      {"IN", "+91 98765 43210", "+919876543210"}, {"IN", "098765 43210", "+919876543210"},
      {"US", "(650) 253-0000", "+16502530000"},   {"CN", "138 0013 8000", "+8613800138000"},
      {"SG", "8123 4567", "+6581234567"},         {"DE", "030 123456", "+4930123456"},
      {"GB", "020 7946 0018", "+442079460018"},   {"BR", "(11) 91234-5678", "+5511912345678"},
      {"JP", "090-1234-5678", "+819012345678"},   {"ID", "0812-3456-7890", "+6281234567890"},
      {"FR", "06 12 34 56 78", "+33612345678"},   {"AU", "0412 345 678", "+61412345678"},
      {"MY", "012-345 6789", "+60123456789"},
  };
  for (const auto& c : cases) {
    auto r = NormalizePhone(c.raw, c.country);
    ASSERT_TRUE(r.ok()) << c.country << " " << r.status().ToString();
    EXPECT_EQ(*r, c.e164) << c.country;
  }
}

TEST(PhoneTest, RejectsInvalidNumbers) {
  for (const char* raw :
       {"", "12", "not a phone", "+1 555", "+999 123456789", "+91 12345 67890 12345"}) {
    auto r = NormalizePhone(raw, "IN");
    ASSERT_FALSE(r.ok()) << raw;
    EXPECT_EQ(r.status().code(), Code::kInvalidPhone);
  }
}

TEST(PhoneTest, ErrorMessageDoesNotEchoTheNumber) {
  auto r = NormalizePhone("+1 555 0100 999", "US");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().find("555"), std::string::npos);
}

TEST(LuhnTest, AcceptsValidImeisAndRejectsTheRest) {
  EXPECT_TRUE(IsValidImei("490154203237518"));
  EXPECT_TRUE(IsValidImei("356938035643809"));
  EXPECT_FALSE(IsValidImei("490154203237519"));  // wrong check digit
  EXPECT_FALSE(IsValidImei("49015420323751"));   // 14 digits
  EXPECT_FALSE(IsValidImei("4901542032375180"));
  EXPECT_FALSE(IsValidImei("49015420323751a"));
  EXPECT_FALSE(IsValidImei(""));
}

TEST(ValidateTest, PasswordNeedsTenCharacters) {
  EXPECT_EQ(ValidatePassword("short").code(), Code::kWeakPassword);
  EXPECT_EQ(ValidatePassword("123456789").code(), Code::kWeakPassword);
  EXPECT_TRUE(ValidatePassword("1234567890").ok());
  // Ten characters of two bytes each count as ten, five of two bytes do not.
  EXPECT_TRUE(ValidatePassword("éééééééééé").ok());
  EXPECT_EQ(ValidatePassword("ééééé").code(), Code::kWeakPassword);
}

TEST(ValidateTest, RecordNames) {
  EXPECT_TRUE(ValidateRecordName("notes", "key").ok());
  EXPECT_TRUE(ValidateRecordName("a.b", "key").ok());
  for (std::string bad : {std::string(""), std::string(".."), std::string("a/b"),
                          std::string("x..y"), std::string("a\0b", 3), std::string(257, 'k')}) {
    EXPECT_EQ(ValidateRecordName(bad, "key").code(), Code::kInvalidField) << bad;
  }
  EXPECT_TRUE(ValidateRecordName(std::string(256, 'k'), "key").ok());
}

TEST(ValidateTest, RegisterBodyChecksEveryField) {
  auto body = [](const char* text) { return *ParseJsonObject(text); };
  auto ok = ParseRegister(body(
      R"({"country":"IN","phone":"+91 98765 43210","password":"0123456789","name":"A","email":"a@b.in"})"));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->phone.value, "+919876543210");
  EXPECT_EQ(
      ParseRegister(body(R"({"country":"XX","phone":"+91 98765 43210","password":"0123456789"})"))
          .status()
          .code(),
      Code::kInvalidCountry);
  EXPECT_EQ(ParseRegister(body(R"({"country":"IN","phone":"12","password":"0123456789"})"))
                .status()
                .code(),
            Code::kInvalidPhone);
  EXPECT_EQ(ParseRegister(body(R"({"country":"IN","phone":"+91 98765 43210","password":"short"})"))
                .status()
                .code(),
            Code::kWeakPassword);
  EXPECT_EQ(ParseRegister(body(R"({"country":"IN","phone":919876543210,"password":"0123456789"})"))
                .status()
                .code(),
            Code::kInvalidField);
  EXPECT_EQ(
      ParseRegister(body(R"({"phone":"+91 98765 43210","password":"0123456789"})")).status().code(),
      Code::kInvalidField);
  EXPECT_EQ(
      ParseRegister(
          body(
              R"({"country":"IN","phone":"+91 98765 43210","password":"0123456789","email":"nope"})"))
          .status()
          .code(),
      Code::kInvalidField);
}

TEST(ValidateTest, PersonalValuesFormatAsRedacted) {
  auto r = ParseRegister(*ParseJsonObject(
      R"({"country":"IN","phone":"+91 98765 43210","password":"0123456789","email":"a@b.in"})"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(fmt::format("{} {} {}", r->phone, r->password, r->email),
            "[redacted] [redacted] [redacted]");
}

TEST(ValidateTest, JsonErrors) {
  EXPECT_EQ(ParseJsonObject("{").status().code(), Code::kInvalidJson);
  EXPECT_EQ(ParseJsonObject("[1,2]").status().code(), Code::kInvalidJson);
  EXPECT_EQ(ParseJsonObject("").status().code(), Code::kInvalidJson);
  EXPECT_TRUE(ParseJsonObject("{\"a\":1}").ok());
}

}  // namespace
}  // namespace meridian::accounts
