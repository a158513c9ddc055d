//! `wasmbuild run`: Cmd, Env, arguments, exit codes and the image's files.

use crate::support::{Home, stderr, stdout};

#[test]
fn runs_with_the_image_cmd_and_env() {
    let home = Home::new();
    home.build("hello", &[]);
    let output = home.run(&["run", "hello"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "Hello from wasmbuild, world!\nargv[0]=/hello.wasm\n"
    );
}

#[test]
fn arguments_replace_cmd_and_env_flags_override_the_image() {
    let home = Home::new();
    home.build("hello", &[]);
    let output = home.run(&["run", "-e", "GREETING=Howdy", "hello", "wasm", "folks"]);
    assert_eq!(stdout(&output), "Howdy, wasm folks!\nargv[0]=/hello.wasm\n");
    // A `--` before the arguments is accepted too, and arguments may look like flags.
    let output = home.run(&["run", "hello", "--", "--not-a-flag"]);
    assert_eq!(
        stdout(&output),
        "Hello from wasmbuild, --not-a-flag!\nargv[0]=/hello.wasm\n"
    );
}

#[test]
fn the_guest_exit_code_becomes_ours() {
    let home = Home::new();
    home.build("hello", &[]);
    for code in [0, 1, 42] {
        let output = home.run(&["run", "-e", &format!("EXIT_CODE={code}"), "hello"]);
        assert_eq!(output.status.code(), Some(code), "{}", stderr(&output));
    }
}

#[test]
fn copied_files_are_readable_at_their_image_paths_and_read_only() {
    let home = Home::new();
    home.build("copy", &[]);
    let output = home.run(&["run", "localhost/site"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "/static/index.html: <h1>hello</h1>\n\
         /static/css/site.css: h1 { color: teal }\n\
         /etc/site/motd.txt: welcome aboard\n\
         PWD=/static\n\
         write: denied\n"
    );
}

#[test]
fn an_unknown_image_is_a_clear_error() {
    let home = Home::new();
    let output = home.run(&["run", "ghcr.io/nobody/nothing:1.0"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("ghcr.io/nobody/nothing:1.0"), "{err}");
}
