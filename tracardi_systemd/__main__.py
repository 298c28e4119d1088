from tracardi_systemd.cli.main import main

main()
