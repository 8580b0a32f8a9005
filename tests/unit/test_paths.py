from ssecfs import paths


def test_keys_with_and_without_prefix():
    assert paths.key_for("", "a/b") == "a/b"
    assert paths.key_for("p/", "a/b") == "p/a/b"
    assert paths.dir_key("p/", "a") == "p/a/"
    assert paths.dir_key("p/", "") == "p/"
    assert paths.dir_key("", "") == ""


def test_child_names():
    assert paths.child_name("p/", "p/x") == "x"
    assert paths.child_name("p/", "p/d/") == "d"
    assert paths.child_name("p/", "p/") is None  # the directory's own marker
    assert paths.child_name("", "a//b") is None
    assert paths.child_name("", "./") is None
    assert paths.child_name("", "..") is None
    assert paths.child_name("", "x" * 256) is None


def test_names_round_trip_any_bytes():
    raw = b"caf\xc3\xa9-\xff\xfe"
    assert paths.encode_name(paths.decode_name(raw)) == raw


def test_rebase_and_within():
    assert paths.is_within("a/b", "a") and paths.is_within("a", "a")
    assert not paths.is_within("ab", "a")
    assert paths.is_within("x", "")
    assert paths.rebase("a/b/c", "a/b", "z") == "z/c"
    assert paths.rebase("a", "a", "q/r") == "q/r"
    assert paths.parent_of("a/b/c") == "a/b" and paths.name_of("a/b/c") == "c"
    assert paths.parent_of("a") == ""


def test_parents_first_puts_every_key_after_the_markers_above_it() -> None:
    keys = ["p/a/b/c", "p/", "p/a/", "p/x", "p/a/b/", "p/a/f"]
    waves = paths.parents_first(keys, "p/")
    assert waves == [["p/"], ["p/a/", "p/x"], ["p/a/b/", "p/a/f"], ["p/a/b/c"]]
    wave_of = {k: i for i, wave in enumerate(waves) for k in wave}
    for key in keys:
        for marker in keys:
            if marker.endswith("/") and key != marker and key.startswith(marker):
                assert wave_of[marker] < wave_of[key], (marker, key)
    assert paths.parents_first([], "p/") == []
