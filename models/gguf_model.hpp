// Llama-architecture GGUF files (llama.cpp's convert_hf_to_gguf output) as our models: the
// HFConfig from the `llama.*` metadata, and the GGUF tensors under our parameter names.
//
//   io::GgufFile file = io::GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf");
//   HFConfig config = gguf_hf_config(file);
//   nn::SourceLookup sources = gguf_sources(file, config);   // "model.layers.0.self_attn.q_proj.weight" -> ...
//
// Every tensor reads dequantized to f32. convert_hf_to_gguf permutes the rows of q_proj and k_proj
// per head for llama.cpp's rotary layout (reshape(heads, 2, head_dim / 2, in).swapaxes(1, 2));
// the q/k sources undo it row by row, reading only the rows a rank asks for.
#pragma once

#include "io/gguf.hpp"
#include "models/hf_config.hpp"
#include "nn/tp_plan.hpp"

#include <string>

namespace dtensor::models {

// True when `path` names a GGUF file (by its ".gguf" extension) rather than a checkpoint directory.
bool is_gguf_path(const std::string& path);

// The config of a Llama GGUF (ValueError naming general.architecture for another architecture,
// ValueError / DTypeError naming the metadata key when one is missing, mistyped or out of range).
HFConfig gguf_hf_config(const io::GgufFile& file);
// The same config as config.json text (what transformers would write for it).
std::string gguf_config_json(const io::GgufFile& file);

// The GGUF tensor holding our parameter `name` ("model.norm.weight" -> "output_norm.weight").
// ValueError naming the parameter for one a Llama GGUF does not hold.
std::string gguf_tensor_name(const std::string& name, const HFConfig& config);

// Sources of our parameters over the file: dequantized f32, q/k rows unpermuted, lm_head tied to
// token_embd when the file has no output.weight.
nn::SourceLookup gguf_sources(const io::GgufFile& file, const HFConfig& config);

}  // namespace dtensor::models
