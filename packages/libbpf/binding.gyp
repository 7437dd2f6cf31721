{
  "targets": [
    {
      "target_name": "shunt_libbpf",
      "sources": [
        "src/native/addon.cc",
        "src/native/errors.cc",
        "src/native/object.cc",
        "src/native/maps.cc",
        "src/native/links.cc",
        "src/native/probes.cc",
        "src/native/netns.cc",
        "src/native/pidfd.cc",
        "src/native/sockets.cc",
        "src/native/unix.cc",
        "src/native/rtnl.cc",
        "src/native/tcx.cc",
        "src/native/diag.cc",
        "src/native/ringbuf.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wno-missing-field-initializers", "<!@(sh scripts/check-libbpf.sh cflags)"],
      "libraries": ["<!@(sh scripts/check-libbpf.sh libs)"]
    }
  ]
}
