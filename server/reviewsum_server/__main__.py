from reviewsum_server.app import main

main()
