# TCP workloads for our image (bench/tcpclient.py is the host side), sent over the raw REPL
# after ours_net.py (make_stack). The stack is put under the socket module; the HTTP server
# is drivers/webstatus.py, whose /1k page is the benchmark's 1 KiB page.
#   @@ tcp_server
#   TCP READY                      listening on rx_port
#   RESULT op=tcprx bytes=N        what the host sent, counted to its FIN
#   TCPTX DONE                     tx_bytes of zeros sent to 10.0.2.2:host_port
#   webstatus: serving ...         the HTTP server; it stops after idle_s without requests
#   HTTPD DONE
TX_CHUNK = 16384


def tcp_server(stack, rx_port, host_port, tx_bytes, http_port, idle_s=3):
    print('@@ tcp_server')
    if stack is None:
        print('NA driver missing')
        return
    import socket
    import webstatus
    socket.set_stack(stack)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('', rx_port))
    s.listen(1)
    print('TCP READY')
    c, _ = s.accept()
    n = 0
    while True:
        d = c.recv(TX_CHUNK)
        if not d:
            break
        n += len(d)
    c.close()
    s.close()
    print('RESULT op=tcprx bytes=%d' % n)
    c = socket.socket()
    c.connect(('10.0.2.2', host_port))
    zero = memoryview(bytes(TX_CHUNK))
    left = tx_bytes
    while left > 0:
        k = TX_CHUNK if left > TX_CHUNK else left
        c.sendall(zero[:k])
        left -= k
    c.close()
    print('TCPTX DONE')
    webstatus.serve(http_port, sock_module=socket, stack=stack, idle_s=idle_s)
    print('HTTPD DONE')
