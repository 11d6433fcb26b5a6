from lingxi.cli import main

main()
