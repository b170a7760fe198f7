from fincorp.cli import main

main()
