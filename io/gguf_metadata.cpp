// GgufFile's typed metadata getters: each names the key, and the wanted and stored types.
#include "io/gguf.hpp"

namespace dtensor::io {

namespace {

[[noreturn]] void wrong_type(const std::string& path, std::string_view key, std::string_view wanted,
                             const GgufValue& value) {
  std::string stored(gguf_value_type_name(value.type));
  if (value.type == GgufValueType::ARRAY) stored = fmt::format("array of {}", gguf_value_type_name(value.element_type));
  fail<DTypeError>("gguf", "{}: metadata '{}' must be {}, got {}", path, key, wanted, stored);
}

int64_t integer_of(const std::string& path, std::string_view key, const GgufValue& value) {
  if (!value.is_integer()) wrong_type(path, key, "an integer", value);
  check(value.type != GgufValueType::U64 || value.uinteger <= uint64_t(INT64_MAX), "gguf",
        "{}: metadata '{}' = {} exceeds int64", path, key, value.uinteger);
  return value.integer;
}

const GgufValue& array_of(const std::string& path, std::string_view key, const GgufValue& value,
                          std::string_view wanted) {
  if (value.type != GgufValueType::ARRAY) wrong_type(path, key, wanted, value);
  return value;
}

bool element_is_integer(const GgufValue& array) {
  GgufValue element;
  element.type = array.element_type;
  return element.is_integer();
}

}  // namespace

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue& value = this->value(key);
  if (value.type != GgufValueType::STRING) wrong_type(path(), key, "a string", value);
  return value.text;
}

int64_t GgufFile::get_int(std::string_view key) const { return integer_of(path(), key, value(key)); }

double GgufFile::get_float(std::string_view key) const {
  const GgufValue& value = this->value(key);
  if (!value.is_float()) wrong_type(path(), key, "a float", value);
  return value.real;
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& value = this->value(key);
  if (value.type != GgufValueType::BOOL) wrong_type(path(), key, "a bool", value);
  return value.boolean;
}

int64_t GgufFile::array_size(std::string_view key) const {
  return int64_t(array_of(path(), key, value(key), "an array").items.size());
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& array = array_of(path(), key, value(key), "an array of strings");
  if (array.element_type != GgufValueType::STRING) wrong_type(path(), key, "an array of strings", array);
  std::vector<std::string> out;
  out.reserve(array.items.size());
  for (const GgufValue& item : array.items) out.push_back(item.text);
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue& array = array_of(path(), key, value(key), "an array of integers");
  if (!element_is_integer(array)) wrong_type(path(), key, "an array of integers", array);
  std::vector<int64_t> out;
  out.reserve(array.items.size());
  for (const GgufValue& item : array.items) out.push_back(integer_of(path(), key, item));
  return out;
}

std::vector<double> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue& array = array_of(path(), key, value(key), "an array of floats");
  if (array.element_type != GgufValueType::F32 && array.element_type != GgufValueType::F64) {
    wrong_type(path(), key, "an array of floats", array);
  }
  std::vector<double> out;
  out.reserve(array.items.size());
  for (const GgufValue& item : array.items) out.push_back(item.real);
  return out;
}

}  // namespace dtensor::io
