"""The command-line tools: each module's main(argv) is one shfan-* command and one `shfan`
subcommand (shfan.cli.main); the options and exit codes they share are in shfan.cli.common."""
