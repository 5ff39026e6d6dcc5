# Generates a C++ source holding tools/web/ files as string literals (run at build time by tools/CMakeLists.txt).
# Inputs: OUTPUT, FILES (comma-separated "url_path|content_type|file" entries).
set(body "#include \"tools/web_assets.hpp\"\n\nnamespace edgews::tools {\nnamespace {\nconst WebAsset kAssets[] = {\n")
string(REPLACE "," ";" FILES "${FILES}")
foreach(entry IN LISTS FILES)
  string(REPLACE "|" ";" parts "${entry}")
  list(GET parts 0 url)
  list(GET parts 1 type)
  list(GET parts 2 file)
  file(READ "${file}" content)
  # Raw string literals are limited in length by some compilers; split into 8 KiB pieces that concatenate.
  string(LENGTH "${content}" length)
  set(literal "")
  set(offset 0)
  while(offset LESS length)
    string(SUBSTRING "${content}" ${offset} 8192 piece)
    string(APPEND literal "R\"edgews_asset(${piece})edgews_asset\"\n")
    math(EXPR offset "${offset} + 8192")
  endwhile()
  if(literal STREQUAL "")
    set(literal "\"\"")
  endif()
  string(APPEND body "  {\"${url}\", \"${type}; charset=utf-8\",\n${literal}},\n")
endforeach()
string(APPEND body "};\n}  // namespace\n\n"
  "const WebAsset* find_web_asset(std::string_view target) {\n"
  "  if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);\n"
  "  for (const WebAsset& asset : kAssets) {\n"
  "    if (asset.path == target) return &asset;\n"
  "  }\n"
  "  return nullptr;\n"
  "}\n\n}  // namespace edgews::tools\n")
file(WRITE "${OUTPUT}.tmp" "${body}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
