from ffrtmp.cli.app import main

main()
