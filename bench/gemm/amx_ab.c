// One-thread A/B of two versions of Sources/SmolKernels/amx_gemm.c on the GEMM shapes of a
// SmolLM2-135M training step (4 × 512 tokens, each of two workers' share): the projections'
// forward, dx and dW, and the cross-entropy head's three GEMMs (682-row chunks). Each shape runs
// old then new, interleaved, best of N; both C results must be the same bits when the versions
// only reorganise packing. Built and run by bench/gemm/amx_ab.sh.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "SmolKernels.h"
size_t old_scratch(int,int,int); void old_gemm(int,int,int,int,int,float,const float*,int,const float*,int,float,float*,int,void*);
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
typedef struct {const char*name;int ta,tb,m,n,k,lda,ldb;} S;
int main(int argc,char**argv){
  if(!smol_cpu_has_amx_bf16()){puts("no amx");return 1;}
  S sh[]={{"fwd q",0,1,1024,576,576,576,576},{"fwd kv",0,1,1024,192,576,576,576},{"fwd up",0,1,1024,1536,576,576,576},{"fwd down",0,1,1024,576,1536,1536,1536},
          {"dx q",0,0,1024,576,576,576,576},{"dx gate",0,0,1024,576,1536,1536,576},{"dx down",0,0,1024,1536,576,576,1536},
          {"dw q",1,0,576,288,2048,576,576},{"dw gate",1,0,768,576,2048,1536,576},{"dw down",1,0,576,768,2048,576,1536},{"dw kv",1,0,192,576,2048,192,576},{"hd fwd",0,1,682,24576,576,576,576},{"hd dx",0,0,682,288,49152,49152,576},{"hd dw",1,0,24576,576,682,49152,576}};
  int ns=sizeof sh/sizeof sh[0]; int reps=argc>1?atoi(argv[1]):5;
  size_t big=(size_t)2048*49152; float*A=malloc(big*4),*B=malloc(big*4),*C1=malloc(big*4),*C2=malloc(big*4);
  for(size_t i=0;i<big;i++){A[i]=(rand()/(float)RAND_MAX-.5f);B[i]=(rand()/(float)RAND_MAX-.5f);}
  void*s1=aligned_alloc(64,64<<20),*s2=aligned_alloc(64,64<<20);
  double to=0,tn=0;
  for(int s=0;s<ns;s++){S x=sh[s];double bo=1e9,bn=1e9;
    for(int r=0;r<reps;r++){
      memset(C1,0,(size_t)x.m*x.n*4);memset(C2,0,(size_t)x.m*x.n*4);
      double t0=now();old_gemm(x.ta,x.tb,x.m,x.n,x.k,1,A,x.lda,B,x.ldb,1,C1,x.n,s1);double t1=now();
      smol_gemm_amx(x.ta,x.tb,x.m,x.n,x.k,1,A,x.lda,B,x.ldb,1,C2,x.n,s2);double t2=now();
      if(t1-t0<bo)bo=t1-t0; if(t2-t1<bn)bn=t2-t1;}
    int same=memcmp(C1,C2,(size_t)x.m*x.n*4)==0; double fl=2.0*x.m*x.n*x.k;
    printf("%-9s old %6.1f new %6.1f GFLOP/s  %.2fx %s\n",x.name,fl/bo*1e-9,fl/bn*1e-9,bo/bn,same?"same bits":"DIFFERENT");
    to+=bo;tn+=bn;}
  printf("total old %.2f ms new %.2f ms: %.3fx\n",to*1e3,tn*1e3,to/tn);
}
