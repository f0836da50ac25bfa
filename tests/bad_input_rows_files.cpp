// Bad-input rows: files a user may be handed (safetensors, the checkpoint index, .npy): missing,
// truncated, malformed headers, sizes that disagree. Each row's message must name its file (or
// the tensor or field at fault).
#include "bad_input_rows.hpp"

#include "io/checkpoint.hpp"
#include "io/npy.hpp"
#include "io/safetensors.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>

using namespace dtensor;
namespace fs = std::filesystem;

namespace bad_input {

namespace {

// Removes the process's scratch directory at exit.
struct Scratch {
  fs::path path = fs::temp_directory_path() / ("dtensor-bad-input-" + std::to_string(::getpid()));
  Scratch() { fs::create_directories(path); }
  ~Scratch() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

std::string le64(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out;
}

// A safetensors file: the header's length, the header, the data.
std::string safetensors(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

// "{entries}": the header's JSON object.
std::string object(const std::string& entries) { return fmt::format("{{{}}}", entries); }

std::string tensor_entry(const std::string& name, const std::string& dtype, const std::string& shape,
                         const std::string& offsets) {
  return fmt::format(R"("{}": {{"dtype": "{}", "shape": {}, "data_offsets": {}}})", name, dtype, shape, offsets);
}

// Writes a safetensors file `name` into the scratch directory; returns its path.
std::string st_file(const std::string& name, const std::string& bytes) {
  const fs::path path = scratch_dir() / name;
  write_file(path, bytes);
  return path.string();
}

// A row opening the safetensors file `name` holding `bytes`; the message must name `argument`
// (the file by default).
Row st_row(ErrorKind expected, const std::string& what, const std::string& name, const std::string& bytes,
           const std::string& argument = "") {
  const std::string path = st_file(name, bytes);
  return {"safetensors: " + what, expected, argument.empty() ? name : argument,
          [path] { io::SafetensorsFile::open(path); }};
}

std::vector<Row> safetensors_rows() {
  const std::string good_w = tensor_entry("w", "F32", "[2]", "[0, 8]");
  const std::string data8(8, '\0');
  const std::string good = st_file("good.safetensors", safetensors(object(good_w), data8));
  return {
      row<ValueError>("safetensors: missing file", "absent.safetensors",
                      [] { io::SafetensorsFile::open((scratch_dir() / "absent.safetensors").string()); }),
      row<ValueError>("safetensors: a directory", "st-dir",
                      [] {
                        fs::create_directories(scratch_dir() / "st-dir");
                        io::SafetensorsFile::open((scratch_dir() / "st-dir").string());
                      }),
      st_row(ErrorKind::Value, "empty file", "empty.safetensors", ""),
      st_row(ErrorKind::Value, "truncated length", "short-length.safetensors", "\x10\x00\x00"),
      st_row(ErrorKind::Value, "header longer than the file", "long-header.safetensors", le64(4096) + "{}"),
      st_row(ErrorKind::Value, "header length near 2^64", "huge-header.safetensors", le64(~uint64_t(0) - 3) + "{}"),
      st_row(ErrorKind::Value, "header not JSON", "not-json.safetensors", safetensors("{\"w\": ", "")),
      st_row(ErrorKind::Value, "header a JSON array", "array.safetensors", safetensors("[1, 2]", "")),
      st_row(ErrorKind::Value, "entry not an object", "entry.safetensors", safetensors("{\"w\": 3}", ""), "'w'"),
      st_row(ErrorKind::DType, "unknown dtype", "dtype.safetensors",
             safetensors(object(tensor_entry("w", "F99", "[2]", "[0, 8]")), data8), "'w'"),
      st_row(ErrorKind::Shape, "negative size", "neg-shape.safetensors",
             safetensors(object(tensor_entry("w", "F32", "[-2]", "[0, 8]")), data8), "'w'"),
      st_row(ErrorKind::Shape, "shape not a list", "shape-type.safetensors",
             safetensors(object(tensor_entry("w", "F32", "\"2\"", "[0, 8]")), data8), "'w'"),
      st_row(ErrorKind::Value, "offsets reversed", "reversed.safetensors",
             safetensors(object(tensor_entry("w", "F32", "[2]", "[8, 0]")), data8), "'w'"),
      st_row(ErrorKind::Value, "offsets past the data", "past-end.safetensors",
             safetensors(object(tensor_entry("w", "F32", "[2]", "[0, 16]")), data8), "'w'"),
      st_row(ErrorKind::Shape, "byte size not the shape's", "size.safetensors",
             safetensors(object(tensor_entry("w", "F32", "[3]", "[0, 8]")), data8), "'w'"),
      st_row(ErrorKind::Value, "tensors overlap", "overlap.safetensors",
             safetensors(object(good_w + ", " + tensor_entry("v", "F32", "[1]", "[4, 8]")), data8), "'v'"),
      st_row(ErrorKind::Value, "metadata not strings", "metadata.safetensors",
             safetensors("{\"__metadata__\": {\"format\": 1}, " + good_w + "}", data8), "__metadata__"),
      row<ValueError>("safetensors: read an unknown tensor", "'nope'",
                      [good] { io::SafetensorsFile::open(good).read("nope"); }),
      row<ShapeError>("safetensors: read_block past the tensor", "'w'",
                      [good] { io::SafetensorsFile::open(good).read_block("w", {1}, {2}); }),
      row<ShapeError>("safetensors: read_block of the wrong rank", "'w'",
                      [good] {
                        io::SafetensorsFile::open(good).read_block("w", {0, 0}, {1, 1});
                      }),
      row<DTypeError>(
          "safetensors: read_block_into another dtype", "'w'",
          [good] { io::SafetensorsFile::open(good).read_block_into("w", {0}, Tensor::zeros({2}, DType::F64)); }),
  };
}

// A checkpoint directory `name` with the index text `index` and a shard "a.safetensors" holding w.
std::string index_dir(const std::string& name, const std::string& index) {
  const fs::path dir = scratch_dir() / name;
  fs::create_directories(dir);
  write_file(dir / "a.safetensors",
             safetensors(object(tensor_entry("w", "F32", "[2]", "[0, 8]")), std::string(8, '\0')));
  write_file(dir / io::kIndexFileName, index);
  return dir.string();
}

Row index_row(const std::string& what, const std::string& name, const std::string& index, const std::string& argument) {
  const std::string dir = index_dir(name, index);
  return row<ValueError>("checkpoint index: " + what, argument, [dir] { io::Checkpoint::open(dir); });
}

std::vector<Row> index_rows() {
  const std::string empty_dir = (scratch_dir() / "no-checkpoint").string();
  fs::create_directories(empty_dir);
  return {
      row<ValueError>("checkpoint: directory without checkpoint files", "no-checkpoint",
                      [empty_dir] { io::Checkpoint::open(empty_dir); }),
      row<ValueError>("checkpoint: missing directory", "absent-dir",
                      [] { io::Checkpoint::open((scratch_dir() / "absent-dir").string()); }),
      index_row("not JSON", "index-json", "{\"weight_map\": ", "index-json"),
      index_row("no weight_map", "index-no-map", "{\"metadata\": {}}", "weight_map"),
      index_row("weight_map an array", "index-map-array", "{\"weight_map\": [\"a.safetensors\"]}", "weight_map"),
      index_row("file name not a string", "index-file-type", "{\"weight_map\": {\"w\": 7}}", "'w'"),
      index_row("shard file missing", "index-missing-shard", "{\"weight_map\": {\"w\": \"b.safetensors\"}}",
                "b.safetensors"),
      index_row("tensor the shard lacks", "index-lacks", "{\"weight_map\": {\"v\": \"a.safetensors\"}}", "'v'"),
      index_row("shard outside the directory", "index-escape",
                "{\"weight_map\": {\"w\": \"../index-lacks/a.safetensors\"}}", "../index-lacks/a.safetensors"),
      index_row("absolute shard path", "index-absolute", "{\"weight_map\": {\"w\": \"/etc/passwd\"}}", "/etc/passwd"),
      row<ValueError>(
          "checkpoint: read an unknown tensor", "'nope'",
          [] {
            io::Checkpoint::open(index_dir("index-good", "{\"weight_map\": {\"w\": \"a.safetensors\"}}")).read("nope");
          }),
  };
}

// A .npy v1.0: magic, version, header length, the header dict padded to 64 bytes, the data.
std::string npy(const std::string& dict, const std::string& data,
                const std::string& version = std::string("\x01\x00", 2)) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  return std::string("\x93NUMPY") + version + char(header.size() & 0xff) + char(header.size() >> 8) + header + data;
}

std::string npy_dict(const std::string& descr, const std::string& shape, const std::string& fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
}

Row npy_row(ErrorKind expected, const std::string& what, const std::string& name, const std::string& bytes,
            const std::string& argument, bool token_ids = false) {
  const fs::path path = scratch_dir() / name;
  write_file(path, bytes);
  return {"npy: " + what, expected, argument,
          [path, token_ids] { token_ids ? io::read_token_ids(path.string()) : io::read_npy(path.string()); }};
}

std::vector<Row> npy_rows() {
  const std::string ids6(6 * 8, '\0');
  return {
      row<ValueError>("npy: missing file", "absent.npy", [] { io::read_npy((scratch_dir() / "absent.npy").string()); }),
      npy_row(ErrorKind::Value, "empty file", "empty.npy", "", "empty.npy"),
      npy_row(ErrorKind::Value, "bad magic", "magic.npy", std::string("\x93NUMPZ\x01\x00\x00\x00", 10), "magic.npy"),
      npy_row(ErrorKind::Value, "unknown version", "version.npy",
              npy(npy_dict("<i8", "(6,)"), ids6, std::string("\x09\x00", 2)), "version"),
      npy_row(ErrorKind::Value, "header cut short", "cut.npy", npy(npy_dict("<i8", "(6,)"), ids6).substr(0, 30),
              "cut.npy"),
      npy_row(ErrorKind::Value, "header not a dict", "not-dict.npy", npy("[1, 2]", ids6), "not-dict.npy"),
      npy_row(ErrorKind::DType, "unknown descr", "descr.npy", npy(npy_dict("<c8", "(6,)"), ids6), "descr"),
      npy_row(ErrorKind::DType, "big-endian descr", "big-endian.npy", npy(npy_dict(">i8", "(6,)"), ids6), "descr"),
      npy_row(ErrorKind::Value, "fortran order", "fortran.npy", npy(npy_dict("<i8", "(2, 3)", "True"), ids6),
              "fortran_order"),
      npy_row(ErrorKind::Shape, "negative shape", "neg-shape.npy", npy(npy_dict("<i8", "(-6,)"), ids6), "shape"),
      npy_row(ErrorKind::Shape, "shape not a tuple", "shape-type.npy", npy(npy_dict("<i8", "'6'"), ids6), "shape"),
      npy_row(ErrorKind::Value, "data shorter than the shape", "short.npy", npy(npy_dict("<i8", "(7,)"), ids6),
              "short.npy"),
      npy_row(ErrorKind::Value, "data longer than the shape", "long.npy", npy(npy_dict("<i8", "(5,)"), ids6),
              "long.npy"),
      npy_row(ErrorKind::Shape, "byte count overflows", "overflow.npy",
              npy(npy_dict("<i8", "(4611686018427387904, 4)"), ids6), "shape"),
      npy_row(ErrorKind::DType, "token ids of floats", "float-ids.npy", npy(npy_dict("<f8", "(2, 3)"), ids6),
              "float-ids.npy", true),
      npy_row(ErrorKind::Shape, "token ids 1-D", "flat-ids.npy", npy(npy_dict("<i8", "(6,)"), ids6), "flat-ids.npy",
              true),
      npy_row(ErrorKind::Shape, "token ids of one column", "column-ids.npy", npy(npy_dict("<i8", "(6, 1)"), ids6),
              "column-ids.npy", true),
      npy_row(ErrorKind::Shape, "token ids of no rows", "no-rows.npy", npy(npy_dict("<i8", "(0, 6)"), ""),
              "no-rows.npy", true),
  };
}

}  // namespace

fs::path scratch_dir() {
  static Scratch scratch;
  return scratch.path;
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::vector<Row> file_rows() {
  std::vector<Row> rows;
  for (auto family : {safetensors_rows, index_rows, npy_rows, gguf_rows}) {
    for (Row& r : family()) rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace bad_input
