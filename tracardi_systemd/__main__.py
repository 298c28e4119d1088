from tracardi_systemd.cli import main

main()
