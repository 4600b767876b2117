"""Optimization profiles (issue 11, build side): the per-file flag selection, the
generated extra script (nanoml_flags.py) run by a real SCons with PlatformIO's own
build middleware, the float ABI it gives (disassembly of a float kernel of ours, the
linker's multilib), and `build --optimize`'s choices and refusals.

The selection tests use tests/data/optimize/test_table.toml: a hand-written TEST
table in the format of nanoml/data/optimize/<runtime>.toml, not measurements."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from firmware_helpers import make_model

from nanoml.errors import UsageError
from nanoml.firmware import optimize
from nanoml.firmware.build import BuildOptions, generate

DATA = Path(__file__).parent / "data" / "optimize"
TEST_TABLE = DATA / "test_table.toml"
FLOAT_KERNEL = DATA / "float_kernel.cpp"
LIB = "Chirale_TensorFLowLite"          # the library's folder name in .pio/libdeps

# Real sources of Chirale_TensorFlowLite 2.0.0 (tag v2.0.0, 46da2f9), library-relative.
KERNEL_CONV = "src/tensorflow/lite/micro/kernels/cmsis_nn/conv.cpp"
KERNEL_FC = "src/tensorflow/lite/micro/kernels/cmsis_nn/fully_connected.cpp"
FC_COMMON = "src/tensorflow/lite/micro/kernels/fully_connected_common.cpp"
ARM_FC_S8 = "src/third_party/cmsis_nn/Source/FullyConnectedFunctions/arm_fully_connected_s8.c"
ARM_CONV_S8 = "src/third_party/cmsis_nn/Source/ConvolutionFunctions/arm_convolve_s8.c"
ARM_CONV_1X1 = "src/third_party/cmsis_nn/Source/ConvolutionFunctions/arm_convolve_1x1_s8_fast.c"
MAT_MULT = "src/third_party/cmsis_nn/Source/ConvolutionFunctions/arm_nn_mat_mult_kernel_s8_s16.c"
DW_3X3 = "src/third_party/cmsis_nn/Source/ConvolutionFunctions/arm_depthwise_conv_3x3_s8.c"
LSTM = "src/tensorflow/lite/micro/kernels/unidirectional_sequence_lstm.cpp"
SOFTMAX = "src/tensorflow/lite/micro/kernels/cmsis_nn/softmax.cpp"
RESHAPE = "src/tensorflow/lite/micro/kernels/reshape.cpp"
INTERPRETER = "src/tensorflow/lite/micro/micro_interpreter.cpp"
KERNEL_UTIL = "src/tensorflow/lite/micro/kernels/kernel_util.cpp"
FRONTEND = "src/tensorflow/lite/experimental/microfrontend/lib/frontend.c"

# ArduinoCore-mbed 4.5.0 variants/ARDUINO_NANO33BLE: the flags cflags.txt and
# cxxflags.txt share (PlatformIO's mbed builder puts those in CCFLAGS, sorted).
VARIANT_CCFLAGS = sorted([
    "-DAPPLICATION_ADDR=0x10000", "-DAPPLICATION_SIZE=0xf0000", "-DMBED_RAM_SIZE=0x40000",
    "-DMBED_RAM_START=0x20000000", "-DMBED_ROM_SIZE=0x100000", "-DMBED_ROM_START=0x0",
    "-DMBED_TRAP_ERRORS_ENABLED=1", "-Os", "-Wall", "-Wextra",
    "-Wno-missing-field-initializers", "-Wno-unused-parameter", "-c", "-fdata-sections",
    "-ffunction-sections", "-fmessage-length=0", "-fno-exceptions", "-fomit-frame-pointer",
    "-funsigned-char", "-mcpu=cortex-m4", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16",
    "-mthumb"])
VARIANT_LDFLAGS = ["-Wl,--gc-sections", "-mcpu=cortex-m4", "-mfloat-abi=softfp",
                   "-mfpu=fpv4-sp-d16", "-mthumb"]
# what configure_fpu_flags (builder-framework-arduino-core-mbed) appends after them
BUILDER_FPU = ["-mfloat-abi=soft", "-mfpu=fpv4-sp-d16"]

SOFT_FLOAT_CALL = re.compile(r"__aeabi_f(add|sub|mul|div|cmp\w*)\b")
FPU_ARITH = re.compile(r"\bv(fma|mla|mul|add)\.f32\b")


def _test_table():
    return optimize.parse_table(tomllib.loads(TEST_TABLE.read_text()), "chirale_2.0.0")


def have_arm() -> bool:
    return all(shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-g++",
                                         "arm-none-eabi-objdump"))


needs_arm = pytest.mark.skipif(not have_arm(), reason="arm-none-eabi-gcc not installed")


# ---------------------------------------------------------------- the selection

def test_speed_flags_reach_exactly_the_kernels_of_the_model():
    t = _test_table()
    files = optimize.file_flags(t, [("CONV_2D", "int8"), ("RESHAPE", "int8")], "speed")
    flags = lambda p: optimize.source_flags(files, p, t.base_flags, "soft")  # noqa: E731
    assert flags(KERNEL_CONV) == ["-O2", "-mfloat-abi=soft"]
    assert flags(ARM_CONV_S8) == flags(ARM_CONV_1X1) == ["-O2", "-mfloat-abi=soft"]
    assert flags(RESHAPE) == ["-Os", "-mfloat-abi=soft"]        # measured: base
    for other in (KERNEL_FC, ARM_FC_S8, DW_3X3, INTERPRETER, KERNEL_UTIL, FRONTEND, LSTM):
        assert flags(other) is None, other                        # not the model's


def test_every_library_file_has_flags_in_the_build():
    t = _test_table()
    ops = [("CONV_2D", "int8"), ("SOFTMAX", "float32")]          # softmax: the FPU pays
    assert optimize.flags_for_source(t, ops, "speed", KERNEL_CONV) == ["-O2", "-mfloat-abi=soft"]
    assert optimize.flags_for_source(t, ops, "speed", INTERPRETER) == ["-Os", "-mfloat-abi=softfp"]
    assert optimize.flags_for_source(t, [("CONV_2D", "int8")], "size", INTERPRETER) == \
        ["-Os", "-mfloat-abi=soft"]


def test_size_profile_keeps_the_base_flags_but_chooses_the_float_abi():
    t = _test_table()
    ops = [("FULLY_CONNECTED", "float32"), ("SOFTMAX", "float32")]
    files = optimize.file_flags(t, ops, "size")
    assert optimize.float_abi(t, ops) == "softfp"
    for p in (KERNEL_FC, FC_COMMON, SOFTMAX):
        assert optimize.source_flags(files, p, t.base_flags, "softfp") == \
            ["-Os", "-mfloat-abi=softfp"]


def test_shared_source_gets_speed_flags_only_when_every_user_agrees():
    t = _test_table()
    # arm_nn_mat_mult_kernel_s8_s16.c: CONV_2D (O2) and DEPTHWISE_CONV_2D (O3) both use it
    both = optimize.file_flags(t, [("CONV_2D", "int8"), ("DEPTHWISE_CONV_2D", "int8")],
                               "speed")
    assert both[MAT_MULT] == ["-Os", "-mfloat-abi=soft"]
    alone = optimize.file_flags(t, [("CONV_2D", "int8")], "speed")
    assert alone[MAT_MULT] == ["-O2", "-mfloat-abi=soft"]
    # fully_connected_common.cpp: FULLY_CONNECTED (O2u) and the LSTM (base: slower at -O2)
    fc_lstm = optimize.file_flags(t, [("FULLY_CONNECTED", "int8"),
                                      ("UNIDIRECTIONAL_SEQUENCE_LSTM", "int8")], "speed")
    assert fc_lstm[FC_COMMON] == ["-Os", "-mfloat-abi=soft"]
    assert fc_lstm[KERNEL_FC] == ["-O2", "-funroll-loops", "-mfloat-abi=soft"]
    assert fc_lstm[LSTM] == ["-Os", "-mfloat-abi=soft"]


def test_float_abi_by_dtype_and_mixed_users():
    t = _test_table()
    assert optimize.float_abi(t, [("CONV_2D", "int8")]) == "soft"
    assert optimize.float_abi(t, [("CONV_2D", "float32")]) == "softfp"
    # an op the table does not know: the FPU for float work, PlatformIO's soft otherwise
    assert optimize.float_abi(t, [("TANH", "int8")]) == "soft"
    assert optimize.float_abi(t, [("TANH", "float32")]) == "softfp"
    # one kernel used in float and in int8: its users disagree, so the build's ABI
    mixed = optimize.file_flags(t, [("CONV_2D", "float32"), ("CONV_2D", "int8")], "speed")
    assert mixed[KERNEL_CONV] == ["-O2", "-mfloat-abi=softfp"]
    # an int8 kernel in a float build keeps the soft ABI it measured best with
    files = optimize.file_flags(t, [("RESHAPE", "int8"), ("SOFTMAX", "float32")], "speed")
    assert files[RESHAPE] == ["-Os", "-mfloat-abi=soft"]
    assert files[SOFTMAX] == ["-O2", "-mfloat-abi=softfp"]


def test_overlapping_globs_combine_like_shared_sources():
    data = tomllib.loads(TEST_TABLE.read_text())
    data["ops"]["ADD"] = {"sources": ["src/third_party/cmsis_nn/Source/ConvolutionFunctions/*"],
                          "speed": "O3", "float_abi": "soft"}
    t = optimize.parse_table(data, "chirale_2.0.0")
    files = optimize.file_flags(t, [("CONV_2D", "int8"), ("ADD", "int8")], "speed")
    assert optimize.source_flags(files, ARM_CONV_S8, t.base_flags, "soft") == \
        ["-Os", "-mfloat-abi=soft"]                       # O2 (CONV_2D) vs O3 (ADD)
    assert optimize.source_flags(files, DW_3X3, t.base_flags, "soft") == \
        ["-O3", "-mfloat-abi=soft"]                       # ADD's glob alone


def test_source_speed_gives_one_file_its_own_set_where_its_op_chose_speed():
    data = tomllib.loads(TEST_TABLE.read_text())
    common = "src/tensorflow/lite/micro/kernels/conv_common.cpp"   # one of CONV_2D's sources
    data["source_speed"] = {common: "O3"}
    t = optimize.parse_table(data, "chirale_2.0.0")
    assert optimize.file_flags(t, [("CONV_2D", "int8")], "speed")[common] == \
        ["-O3", "-mfloat-abi=soft"]                       # its own set, not CONV_2D's O2
    assert optimize.file_flags(t, [("CONV_2D", "int8")], "speed")[KERNEL_CONV] == \
        ["-O2", "-mfloat-abi=soft"]
    assert optimize.file_flags(t, [("CONV_2D", "int8")], "size")[common] == \
        ["-Os", "-mfloat-abi=soft"]
    # an op left at base keeps the file at base
    data["ops"]["CONV_2D"]["speed"] = "base"
    t = optimize.parse_table(data, "chirale_2.0.0")
    assert optimize.file_flags(t, [("CONV_2D", "int8")], "speed")[common] == \
        ["-Os", "-mfloat-abi=soft"]


def test_op_uses_reads_the_dtype_of_the_work(tmp_path):
    from nanoml.model.tflite import load
    f = load(make_model(tmp_path / "f.tflite", (1, 8), 4, dtype="float32"))
    q = load(make_model(tmp_path / "q.tflite", (1, 8), 4, dtype="int8"))
    assert ("FULLY_CONNECTED", "float32") in optimize.op_uses(f)
    assert ("FULLY_CONNECTED", "int8") in optimize.op_uses(q)


def test_extra_code_bytes_counts_the_chosen_sets():
    t = _test_table()
    assert optimize.extra_code_bytes(t, [("CONV_2D", "int8"), ("RESHAPE", "int8")],
                                     "speed") == 2000
    assert optimize.extra_code_bytes(t, [("CONV_2D", "int8")], "size") == 0


@pytest.mark.parametrize("bad, what", [
    ({"base_flags": "-Os"}, "base_flags"),
    ({"base_flags": ["-Os"], "ops": {"CONV_2D": {"sources": ["a.c"], "speed": "O9"}}},
     "ops.CONV_2D.speed"),
    ({"base_flags": ["-Os"], "ops": {"CONV_2D": {"sources": ["a.c"], "float_abi": "hard"}}},
     "float_abi"),
    ({"base_flags": ["-Os"], "ops": {"CONV_2D": {"speed": "base"}}}, "sources"),
    ({"base_flags": ["-Os"], "source_speed": {"a.c": "O9"}}, "source_speed"),
])
def test_malformed_tables_are_refused(bad, what):
    with pytest.raises(optimize.TableError, match=re.escape(what)):
        optimize.parse_table(bad, "x")


SHIPPED = sorted(Path(optimize.__file__).resolve().parent.parent.joinpath("data", "optimize")
                 .glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_tables_load_and_name_library_sources(path):
    from nanoml.runtimes import get_runtime
    t = optimize.load_table(path.stem)
    rt = get_runtime(path.stem)
    assert t is not None and t.ops and t.base_flags == ("-Os",)
    for name, e in t.ops.items():
        assert name in rt.ops, name                          # a builtin op of the runtime
        for glob in e.sources:
            assert glob.startswith("src/") and ".." not in glob.split("/"), (name, glob)
        if e.speed != optimize.BASE:                       # a choice has its code size
            assert {optimize.BASE, e.speed} <= set(e.code_bytes), name
    assert optimize.file_flags(t, [(n, "int8") for n in t.ops], "speed")


# ---------------------------------------------------------------- build --optimize

@pytest.fixture
def table(monkeypatch):
    """The runtime's table is the TEST table (not measurements)."""
    t = _test_table()
    monkeypatch.setattr(optimize, "load_table", lambda rt: t if rt == "chirale_2.0.0" else None)
    return t


def _script_data(project: Path) -> dict:
    """FILES, FLOAT_ABI, PROFILE as the generated script defines them."""
    text = (project / "nanoml_flags.py").read_text()
    ns: dict = {}
    for name in ("PROFILE", "FLOAT_ABI", "BASE_FLAGS", "LIBRARY_HEADER", "FILES"):
        m = re.search(rf"^{name} = (.*?)(?=^\w)", text, re.S | re.M)
        ns[name] = eval(m.group(1), {})          # literals nanoml rendered
    return ns


def test_build_renders_the_table_into_the_script(tmp_path, table):
    p = make_model(tmp_path / "f.tflite", (1, 8), 4, dtype="float32")
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", optimize="speed"))
    o = res.spec.optimize
    assert (o.profile, o.chosen_by, o.float_abi) == ("speed", "option", "softfp")
    data = _script_data(res.project_dir)
    assert data["FILES"] == o.files == optimize.file_flags(
        table, optimize.op_uses(res.spec.model), "speed")
    assert data["FILES"][KERNEL_FC] == ["-O2", "-funroll-loops", "-mfloat-abi=softfp"]
    assert (data["PROFILE"], data["FLOAT_ABI"]) == ("speed", "softfp")
    assert data["LIBRARY_HEADER"] == res.spec.runtime.header
    assert "nanoml_flags.py" in res.files.written


def test_platformio_accepts_the_project_with_its_extra_script(tmp_path, table):
    from platformio.project.config import ProjectConfig
    p = make_model(tmp_path / "f.tflite", (1, 8), 4, dtype="float32")
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", optimize="speed"))
    ini = res.project_dir / "platformio.ini"
    cfg = ProjectConfig(str(ini), parse_extra=True, expand_interpolations=True)
    assert cfg.validate(silent=True)
    lint = ProjectConfig.lint(str(ini))
    assert lint["errors"] == [] and lint["warnings"] == [], lint
    assert cfg.get("env:nano33ble_sense", "extra_scripts") == \
        ["pre:nanoml_flags.py", "post:nanoml_flags.py"]
    compile(res.project_dir.joinpath("nanoml_flags.py").read_text(), "nanoml_flags.py", "exec")


def test_default_profile_is_speed_when_it_fits_and_size_when_not(tmp_path, table, monkeypatch):
    p = make_model(tmp_path / "q.tflite", (1, 8), 4)
    res = generate(BuildOptions(model=p, out=tmp_path / "a"))
    assert (res.spec.optimize.profile, res.spec.optimize.chosen_by) == ("speed", "default")
    monkeypatch.setattr(optimize, "SPEED_FLASH_MARGIN", 0.9999)     # no room left
    res = generate(BuildOptions(model=p, out=tmp_path / "b"))
    assert res.spec.optimize.profile == "size"
    assert any("flash" in n for n in res.spec.optimize.notes)
    assert res.spec.optimize.files[KERNEL_FC][0] == "-Os"


def test_speed_is_refused_where_it_cannot_be_built(tmp_path, table):
    p = make_model(tmp_path / "q.tflite", (1, 8), 4)
    with pytest.raises(UsageError, match="Arduino IDE cannot set"):
        generate(BuildOptions(model=p, out=tmp_path / "sk", fmt="arduino", optimize="speed"))
    with pytest.raises(UsageError, match="no measured kernel flags"):
        generate(BuildOptions(model=p, out=tmp_path / "a", runtime="arduino_tflite_2023",
                              optimize="speed"))
    res = generate(BuildOptions(model=p, out=tmp_path / "sk2", fmt="arduino"))
    assert res.spec.optimize.profile == "size"
    assert "softfp" in res.spec.optimize.notes[0] and "-Os" in res.spec.optimize.notes[0]
    res = generate(BuildOptions(model=p, out=tmp_path / "b", runtime="arduino_tflite_2023"))
    assert res.spec.optimize.profile == "size" and res.spec.optimize.files == {}


# ---------------------------------------------------------------- a real SCons run

SCONSTRUCT = '''
import os
from SCons.Script import DefaultEnvironment
from platformio.builder.tools import piobuild

env = DefaultEnvironment(tools=["gcc", "g++", "gnulink", "ar", "as"], CC="arm-none-eabi-gcc",
                         CXX="arm-none-eabi-g++", AS="arm-none-eabi-gcc",
                         AR="arm-none-eabi-ar", RANLIB="arm-none-eabi-ranlib",
                         LINK="arm-none-eabi-g++", BUILD_DIR="#build", ENV=os.environ)
piobuild.generate(env)                            # AddBuildMiddleware, BuildLibrary, ...
env.SConscript("nanoml_flags.py", exports="env")  # extra_scripts pre:
# the mbed core builder (framework script, run inside BuildProgram): the variant's
# shared flags, then configure_fpu_flags
env.Append(CCFLAGS=%(ccflags)r, ASFLAGS=[f for f in %(ccflags)r if f.startswith("-m")],
           LINKFLAGS=%(ldflags)r + ["--specs=nosys.specs", "--specs=nano.specs"])
env.Append(CCFLAGS=%(fpu)r, ASFLAGS=%(fpu)r, LINKFLAGS=%(fpu)r)
core = env.BuildLibrary("$BUILD_DIR/FrameworkArduino", "core")
libenv = env.Clone()                              # PlatformIO's LibBuilder clones the env
lib = libenv.BuildLibrary("$BUILD_DIR/lib/%(lib)s", ".pio/libdeps/env/%(lib)s/src")
env.BuildSources("$BUILD_DIR/src", "src")
prog = env.Program("$BUILD_DIR/firmware.elf", env["PIOBUILDFILES"] + [lib, core])
env.Replace(PIOMAINPROG=prog)
env.SConscript("nanoml_flags.py", exports="env")  # extra_scripts post:
'''

LIB_FILES = (KERNEL_FC, FC_COMMON, ARM_FC_S8, SOFTMAX, RESHAPE, INTERPRETER, KERNEL_CONV)


def _fake_tree(root: Path) -> None:
    """The generated project, a library folder with real Chirale paths (tiny sources;
    cmsis_nn/fully_connected.cpp is our float kernel) and a core file."""
    libdir = root / ".pio" / "libdeps" / "env" / LIB
    (libdir / "src").mkdir(parents=True)
    (libdir / "library.properties").write_text(f"name={LIB}\n")
    (libdir / "src" / "Chirale_TensorFlowLite.h").write_text("#pragma once\n")
    for i, rel in enumerate(LIB_FILES):
        f = libdir / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(FLOAT_KERNEL.read_text() if rel == KERNEL_FC else
                     f'extern "C" int nanoml_lib_{i}(int x) {{ return x + {i}; }}\n')
    (root / "core").mkdir()
    (root / "core" / "main.cpp").write_text(FLOAT_KERNEL.read_text().replace(
        "nanoml_test_", "nanoml_core_"))
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "main.cpp").write_text("int main() { return 0; }\n")


def _scons(root: Path, *args: str) -> str:
    (root / "SConstruct").write_text(SCONSTRUCT % {
        "ccflags": VARIANT_CCFLAGS, "ldflags": VARIANT_LDFLAGS, "fpu": BUILDER_FPU,
        "lib": LIB})
    r = subprocess.run([sys.executable, "-m", "SCons", "-Q", *args], cwd=root,
                       capture_output=True, text=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "NANOML_FLAGS_QUIET": "",
                            "PYTHONPATH": ":".join(sys.path)})
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _commands(out: str) -> dict[str, list[str]]:
    """{source file (relative): its compile command's arguments}, and 'LINK'."""
    cmds = {}
    for line in out.splitlines():
        argv = line.split()
        if not argv or not argv[0].startswith("arm-none-eabi-"):
            continue
        if "-c" in argv:
            src = argv[-1]
            cmds[src.split(f"{LIB}/", 1)[-1]] = argv
        elif "-o" in argv and argv[argv.index("-o") + 1].endswith(".elf"):
            cmds["LINK"] = argv
    return cmds


def _last(argv: list[str], prefix: str) -> list[str]:
    return [a for a in argv if a.startswith(prefix)]


@pytest.fixture
def project(tmp_path, table):
    pytest.importorskip("SCons")
    p = make_model(tmp_path / "f.tflite", (1, 4, 2), 4, dtype="float32")   # RESHAPE, FC, SOFTMAX
    res = generate(BuildOptions(model=p, out=tmp_path / "proj", optimize="speed"))
    assert [o.name for o in res.spec.ops] == ["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]
    _fake_tree(res.project_dir)
    return res


def test_scons_runs_the_script_flags_reach_the_kernels_not_the_core(project):
    out = _scons(project.project_dir, "-n")          # dry run: the commands it would run
    cmds = _commands(out)
    assert "nanoml: optimization profile speed, float ABI softfp, 5 library file(s)" in out
    for rel in LIB_FILES:
        assert rel in cmds, (rel, sorted(cmds))
    files = project.spec.optimize.files
    for rel in (KERNEL_FC, FC_COMMON, ARM_FC_S8, SOFTMAX, RESHAPE):
        want = optimize.source_flags(files, rel, ["-Os"], "softfp")
        argv = cmds[rel]
        assert _last(argv, "-O") == [f for f in want if f.startswith("-O")], rel
        assert [a for a in argv if a == "-funroll-loops"] == \
            [f for f in want if f == "-funroll-loops"], rel
        assert _last(argv, "-mfloat-abi=") == [want[-1]], rel
    # not the model's kernels: the core's -Os, the build's float ABI (builder's soft gone)
    for rel in (INTERPRETER, KERNEL_CONV, "core/main.cpp", "src/main.cpp"):
        key = next(k for k in cmds if k.endswith(rel))
        assert _last(cmds[key], "-O") == ["-Os"], rel
        assert _last(cmds[key], "-mfloat-abi=") == ["-mfloat-abi=softfp"], rel
    link = cmds["LINK"]
    assert _last(link, "-mfloat-abi=") == ["-mfloat-abi=softfp"]


@needs_arm
def test_link_flags_pick_the_fpu_multilib(project):
    link = _commands(_scons(project.project_dir, "-n"))["LINK"]
    machine = [a for a in link if a.startswith(("-mcpu", "-mthumb", "-mfloat-abi", "-mfpu"))]
    multi = subprocess.run(["arm-none-eabi-gcc", *machine, "-print-multi-directory"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert multi == "thumb/v7e-m+fp/softfp"
    default = subprocess.run(["arm-none-eabi-gcc", *VARIANT_LDFLAGS[1:], *BUILDER_FPU,
                              "-print-multi-directory"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # without the fix (softfp, then the builder's soft) no FPU multilib either: GCC 12.2
    # here even falls back to the default "." (ARM-mode armv4t libraries)
    assert default != multi


def _disassemble(obj: Path) -> str:
    return subprocess.run(["arm-none-eabi-objdump", "-d", "-r", str(obj)], capture_output=True,
                          text=True, check=True).stdout


@needs_arm
def test_float_kernel_compiled_by_the_project_runs_on_the_fpu(project):
    """Our float kernel, at the place of cmsis_nn/fully_connected.cpp, compiled by SCons
    with exactly the command the generated project gives it: FPU instructions, no
    soft-float calls. The same source compiled as PlatformIO does without the script
    (variant flags + the builder's soft) calls __aeabi_fmul/__aeabi_fadd."""
    root = project.project_dir
    _scons(root, f"build/lib/{LIB}/" + KERNEL_FC.removeprefix("src/").replace(".cpp", ".o"))
    obj = next(root.joinpath("build").rglob("fully_connected.o"))
    text = _disassemble(obj)
    assert not SOFT_FLOAT_CALL.search(text), SOFT_FLOAT_CALL.findall(text)
    assert FPU_ARITH.search(text)
    old = root / "old.o"
    subprocess.run(["arm-none-eabi-g++", *VARIANT_CCFLAGS, *BUILDER_FPU, "-o", str(old),
                    str(FLOAT_KERNEL)], check=True)
    old_text = _disassemble(old)
    assert {"__aeabi_fmul", "__aeabi_fadd"} <= set(re.findall(r"__aeabi_f\w+", old_text))
    assert not FPU_ARITH.search(old_text)
